"""LTI Advantage Assignment and Grade Services as a gradebook destination (D4)."""
