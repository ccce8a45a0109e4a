"""Credentials at rest: Fernet-encrypted, with the key from the environment or a key file.

The key file is created on first use with owner-only permissions so a district that
sets nothing still never has a plain-text secret in its database.
"""

from __future__ import annotations

import json
import os

from cryptography.fernet import Fernet, InvalidToken

from passback.errors import Invalid
from passback.settings import Settings, get_settings


class SecretKeyError(Invalid):
    pass


def load_key(settings: Settings | None = None, *, create: bool = True) -> bytes:
    """The key credentials are encrypted with: ``PASSBACK_SECRET_KEY``, else the key file.

    Only saving a connection may make a new key file (``create``): reading connections
    with a key made up on the spot would fail later with a worse message, so a missing key
    file is said to be missing, with where the key must come from.
    """
    settings = settings or get_settings()
    if settings.secret_key:
        return settings.secret_key.encode()
    key_file = settings.ensure_data_dir() / "secret.key"
    if not key_file.exists() and not create:
        raise SecretKeyError(
            f"The key file {key_file} is missing, so saved credentials cannot be read. Restore it from your "
            "backup (or set PASSBACK_SECRET_KEY to the key the connections were saved with); otherwise save each "
            "connection again with `passback connect ... --replace`.")
    if not key_file.exists():
        key = Fernet.generate_key()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key
    return key_file.read_bytes().strip()


def encrypt(values: dict[str, str], key: bytes) -> str:
    return Fernet(key).encrypt(json.dumps(values).encode()).decode()


def decrypt(token: str, key: bytes) -> dict[str, str]:
    try:
        return json.loads(Fernet(key).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretKeyError(
            "Stored credentials cannot be decrypted with this key. "
            "Set PASSBACK_SECRET_KEY to the key the connection was saved with, "
            "or save the connection again."
        ) from exc

