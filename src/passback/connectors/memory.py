"""What one process keeps between runs: access tokens and read-mostly listings.

Why: a worker (or ``sync --all`` in one process) runs course after course against the
same systems. Each run used to fetch an OAuth token of its own and read a school's whole
student list again (60 pages for a school of 6,000), though neither had changed: a
district sync of 50 courses spent 3,000 of its 16,000 requests on the same list.

Nothing kept here is trusted blindly:

* a token is used until it expires (less the client's leeway); a 401 fetches a new one,
  as it always did, and that one replaces it for every later run;
* a listing is kept for ``listing_ttl`` seconds at most, and each use asks the server for
  the listing's count first: a different count reads it again whole. The caller checks
  what it can besides (the PowerSchool destination reads a section's roster fresh every
  run, and a rostered student missing from a kept list reads the list again).

Keys hold no secret in the clear: a client secret is part of a token's key only as a hash,
so a changed secret is a new key.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

LISTING_TTL = 600.0  # seconds: a school's list of students changes by enrollments, not by the minute


def token_key(token_url: str, client_id: str, client_secret: str, scope: str = "") -> tuple[str, str, str, str]:
    return token_url, client_id, hashlib.sha256(client_secret.encode()).hexdigest(), scope


@dataclass
class ProcessMemory:
    """Tokens by (token URL, client id, secret's hash, scope); listings by (base URL, path)."""

    listing_ttl: float = LISTING_TTL
    _tokens: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _listings: dict[tuple[str, str], tuple[float, list[Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # runs of one process may sit in several threads

    def token(self, key: tuple[str, ...]) -> Any | None:
        with self._lock:
            return self._tokens.get(key)

    def keep_token(self, key: tuple[str, ...], token: Any) -> None:
        with self._lock:
            self._tokens[key] = token

    def listing(self, base_url: str, path: str) -> list[Any] | None:
        """The listing as last read, unless it is older than the TTL."""
        with self._lock:
            kept = self._listings.get((base_url, path))
            if kept is None:
                return None
            if time.monotonic() - kept[0] > self.listing_ttl:
                del self._listings[(base_url, path)]
                return None
            return kept[1]

    def keep_listing(self, base_url: str, path: str, rows: list[Any]) -> None:
        with self._lock:
            self._listings[(base_url, path)] = (time.monotonic(), rows)


_PROCESS = ProcessMemory()


def process_memory() -> ProcessMemory:
    """This process's memory (one per process: a forked worker starts with its parent's, which is harmless)."""
    return _PROCESS
