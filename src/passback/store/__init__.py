"""The store: configuration, identity map, run history and audit, on SQLite or PostgreSQL."""

from passback.store.db import Store, open_store

__all__ = ["Store", "open_store"]
