"""A Schoology connection: the API URL and a two-legged OAuth 1.0a key."""

from __future__ import annotations

from passback.connectors.config import ConnectionConfig


class SchoologyConfig(ConnectionConfig):
    kind = "schoology"
    label = "Schoology"
    secret_fields = ("consumer_secret",)
    consumer_key: str
    consumer_secret: str
