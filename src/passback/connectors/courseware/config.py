"""A courseware connection: the courseware's API URL and an API token.

``events_secret`` (optional) is the secret the courseware signs its change events with
(HMAC-SHA256, ``X-Courseware-Signature``); ``/events/courseware`` refuses events without it.
"""

from __future__ import annotations

from passback.connectors.config import ConnectionConfig


class CoursewareConfig(ConnectionConfig):
    kind = "courseware"
    label = "Courseware"
    secret_fields = ("token", "events_secret")
    token: str
    events_secret: str | None = None
