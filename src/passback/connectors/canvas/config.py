"""A Canvas connection: the instance URL and an access token."""

from __future__ import annotations

from passback.connectors.config import ConnectionConfig


class CanvasConfig(ConnectionConfig):
    kind = "canvas"
    label = "Canvas"
    secret_fields = ("token",)
    token: str
