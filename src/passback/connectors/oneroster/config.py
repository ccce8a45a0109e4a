"""A OneRoster connection: the server's base URL, an OAuth 2 client id and secret, the version it speaks.

``url`` is the server's base, before ``/ims/oneroster`` (Aeries: ``https://district.aeries.net/aeries``).
``version`` is ``v1p1`` (OneRoster 1.1: what PowerSchool, Aeries, Skyward and most SIS serve
today, and the default) or ``v1p2`` (OneRoster 1.2: gradebook and rostering as two services).

``token_url``: 1EdTech's Security Framework (OAuth 2 client credentials, which OneRoster 1.2
requires and 1.1 servers adopted) leaves the token endpoint to the provider, made known out of
band; servers differ (Aeries ``{url}/token``, others ``{url}/oauth/token``). Without one,
``{url}/oauth/token`` is used; give the provider's when it says otherwise.
"""

from __future__ import annotations

from typing import Literal

from passback.connectors.config import ClientCredentialsConfig

VERSIONS = ("v1p1", "v1p2")


class OneRosterConfig(ClientCredentialsConfig):
    kind = "oneroster"
    label = "OneRoster"
    version: Literal["v1p1", "v1p2"] = "v1p1"
    token_url: str | None = None

    def token_endpoint(self) -> str:
        """The provider's token URL, else the common ``{url}/oauth/token``."""
        return (self.token_url or "").strip() or f"{self.url}/oauth/token"
