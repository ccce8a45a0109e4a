"""A PowerSchool connection: the server URL and a plugin's client id and secret."""

from __future__ import annotations

from passback.connectors.config import ClientCredentialsConfig


class PowerSchoolConfig(ClientCredentialsConfig):
    kind = "powerschool"
    label = "PowerSchool"
