"""Validation rules (V) and the error catalogue: pure, no I/O."""
