"""Canvas's failures in passback's terms: which answers mean what, and the fix to name."""

from __future__ import annotations

import httpx

from passback.errors import SourceError, SourceNotFound


def unreachable(exc: Exception) -> SourceError:
    return SourceError(f"Canvas did not answer: {exc}. Check the Canvas URL and try again.")


def refused(response: httpx.Response, url: str) -> SourceError | None:
    """The error an answer means, or None for an answer to use."""
    if response.status_code == 401:
        if "www-authenticate" in response.headers:
            return SourceError(
                "Canvas refused the access token (Invalid access token). "
                "Generate a new token and save the connection again."
            )
        return SourceError(
            f"Canvas says the token's user may not do this ({url}). "
            "Use a token of a teacher or admin of the course."
        )
    if response.status_code == 404:
        return SourceNotFound(f"Canvas has no such record: {url}. Check the course id.")
    if response.status_code >= 400:
        return SourceError(f"Canvas answered HTTP {response.status_code} for {url}: {error_text(response)}")
    return None


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        return "; ".join(str(e.get("message", e)) for e in errors)
    return str(body)[:200]
