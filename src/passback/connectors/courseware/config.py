"""A courseware connection: the courseware's API URL and an API token."""

from __future__ import annotations

from passback.connectors.config import ConnectionConfig


class CoursewareConfig(ConnectionConfig):
    kind = "courseware"
    label = "Courseware"
    secret_fields = ("token",)
    token: str
