"""An LTI Advantage connection: passback as an LTI 1.3 tool writing into one platform's gradebooks.

What the connection holds, and why (the key and credential design):

* ``url``: the platform's API host (for Canvas, the institution's own host, such as
  ``https://district.instructure.com``). Access tokens are only ever sent to this host:
  a course's line items container (the "section" a run writes into) must be on it.
* ``client_id``: the tool's client id on the platform (for Canvas, the developer key's id).
* ``token_url``: the platform's OAuth 2 token endpoint (for Canvas cloud,
  ``https://sso.canvaslms.com/login/oauth2/token``; the emulator's is on its own host).
* ``private_key`` and ``key_id``: passback's LTI signing key as PKCS#8 PEM and the ``kid``
  the platform finds its public half under (in the tool's JWKS, ``/lti/jwks``). The client
  assertion the token request carries is signed with it.
* ``audience``: what the assertion's ``aud`` names, when the platform wants something other
  than its token URL (Canvas and the spec's default: the token URL).

The private key is a copy of the tool key the LTI service keeps (``tool_keys``, encrypted
with the vault key). The connectors layer may not read the store, so the key travels
the way every other secret does: as an encrypted credential of the saved connection,
built from the registered platform and the tool key by
:func:`passback.services.lti.ags_credentials`. After the tool key is rotated, that helper
is run again and the connection saved over (``replace``): the platform fetches the new
public key from the tool's JWKS, and the old copy stops working once it is unpublished.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from pydantic import field_validator

from passback.connectors.config import ConnectionConfig


class LtiAgsConfig(ConnectionConfig):
    kind: ClassVar[str] = "lti_ags"
    label: ClassVar[str] = "LTI Advantage (AGS)"
    secret_fields: ClassVar[tuple[str, ...]] = ("private_key",)
    client_id: str
    token_url: str
    private_key: str
    key_id: str
    audience: str = ""

    @field_validator("client_id", "key_id")
    @classmethod
    def _given(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("is empty")
        return value

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("is not an http(s) URL: give the platform's token endpoint (the LTI registration's "
                             "auth token URL)")
        return value

    @field_validator("private_key")
    @classmethod
    def _rsa_private_key(cls, value: str) -> str:
        try:
            key = RSAKey.import_key(value.strip().encode())
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError("is not an RSA private key in PEM form (passback's LTI tool key)") from exc
        if not key.is_private:
            raise ValueError("is a public key; the client assertion is signed with the private one")
        return value.strip() + "\n"

    @property
    def assertion_audience(self) -> str:
        """The ``aud`` of the client assertion: the token URL unless the platform names another."""
        return self.audience.strip() or self.token_url
