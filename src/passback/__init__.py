"""passback: grade passback from where teachers grade to the systems of record."""

__version__ = "0.1.0"
