"""Reading a JSON Web Key Set: the RS256 signing keys by kid, for every place passback verifies a JWT.

LTI launches and Canvas Live Events are both signed by a party that publishes its keys; a
set may hold keys of other kinds or uses, or one broken entry, and none of those may
spoil the keys that can verify.
"""

from __future__ import annotations

from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

ALGORITHM = "RS256"


def parse_jwks(entries: list[Any]) -> dict[str, RSAKey]:
    """The RSA signing keys of a JWKS's ``keys``, by kid; a broken or foreign entry does not spoil the others."""
    keys: dict[str, RSAKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not entry.get("kid"):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            keys[str(entry["kid"])] = RSAKey.import_key(entry)
        except (JoseError, ValueError, TypeError):
            continue
    return keys
