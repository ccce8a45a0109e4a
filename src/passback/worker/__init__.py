"""The task engine's adapter: Celery workers and beat over the same services the CLI calls."""
