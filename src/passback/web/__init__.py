"""The web product: pages, the REST API under /api/v1 and the LTI launch, thin over the services."""
