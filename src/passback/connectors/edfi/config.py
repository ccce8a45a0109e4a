"""An Ed-Fi connection: the ODS/API base URL and an API key and secret."""

from __future__ import annotations

from passback.connectors.config import ClientCredentialsConfig


class EdFiConfig(ClientCredentialsConfig):
    kind = "edfi"
    label = "Ed-Fi"
