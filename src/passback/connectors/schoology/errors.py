"""Schoology's failures in passback's terms: which answers mean what, and the fix to name."""

from __future__ import annotations

import httpx

from passback.errors import SourceError, SourceNotFound


def unreachable(exc: Exception) -> SourceError:
    return SourceError(f"Schoology did not answer: {exc}. Check the Schoology URL and try again.")


def refused(response: httpx.Response, url: str) -> SourceError | None:
    """The error an answer means, or None for an answer to use."""
    if response.status_code == 401:
        return SourceError(f"Schoology refused the API key ({response.text.strip()[:120]}). "
                           "Check the consumer key and secret and save the connection again.")
    if response.status_code in (403, 404):
        return SourceNotFound(f"Schoology has no such record, or this key may not see it: {url}.")
    if response.status_code >= 400:
        return SourceError(f"Schoology answered HTTP {response.status_code} for {url}: {response.text[:200]}")
    return None
