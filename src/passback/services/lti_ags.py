"""LTI Advantage connections: passback-the-tool's credentials at a registered platform, saved as a connection.

The AGS connector signs its token requests with passback's LTI tool key, which the LTI
service keeps in the store (encrypted with the vault key). Connectors may not read the
store, so the key reaches the connector the way every secret does: as a credential of a
saved connection, encrypted at rest like the others. :func:`ags_credentials` builds those
credentials from a platform registration (its client id and token URL) and the tool's
current signing key (its PEM and ``kid``); :func:`save_ags_connection` saves them.

Run it again (``replace=True``) after the tool key is rotated: the copy in the connection
is the key the platform must find in passback's JWKS.
"""

from __future__ import annotations

from typing import Any

from passback.connectors.lti_ags.config import LtiAgsConfig
from passback.services import connections, lti
from passback.settings import Settings
from passback.store.connections import Connection
from passback.store.db import Store


def ags_credentials(store: Store, settings: Settings, platform_id: int) -> dict[str, str]:
    """The credentials of an AGS connection to platform ``platform_id``: client id, token URL, tool key and kid."""
    platform = lti.get_platform(store, platform_id)
    key = lti.tool_signing_key(store, settings)
    return {"client_id": str(platform["client_id"]), "token_url": str(platform["auth_token_url"]),
            "private_key": key.as_pem(private=True).decode(), "key_id": str(key.kid)}


def save_ags_connection(store: Store, settings: Settings, platform_id: int, *, name: str, url: str | None = None,
                        replace: bool = False) -> Connection:
    """Save (or, with ``replace``, refresh) the AGS connection of a registered platform.

    ``url`` is the platform's API host; by default the URL of the connection its launches
    read courses from (for Canvas, the same instance).
    """
    if url is None:
        platform = lti.get_platform(store, platform_id)
        url = connections.load(store, settings, int(platform["source_connection_id"])).base_url
    credentials: dict[str, Any] = ags_credentials(store, settings, platform_id)
    return connections.save(store, settings, name=name, kind=LtiAgsConfig.kind, url=url, credentials=credentials,
                            replace=replace)
