"""The courseware's failures in passback's terms: which answers mean what, and the fix to name."""

from __future__ import annotations

import httpx

from passback.errors import SourceError, SourceNotFound


def unreachable(exc: Exception) -> SourceError:
    return SourceError(f"The courseware did not answer: {exc}. Check the courseware URL and try again.")


def error_text(response: httpx.Response) -> str:
    """The ``error.message`` of the courseware's error body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    problem = body.get("error") if isinstance(body, dict) else None
    if isinstance(problem, dict) and problem.get("message"):
        field = f" ({problem['field']})" if problem.get("field") else ""
        return f"{problem['message']}{field}"
    return str(body)[:200]


def refused(response: httpx.Response, url: str) -> SourceError | None:
    """The error an answer means, or None for an answer to use."""
    if response.status_code == 401:
        return SourceError(f"The courseware refused the API token ({error_text(response)}). "
                           "Create a new token in the courseware and save the connection again.")
    if response.status_code == 404:
        return SourceNotFound(f"The courseware has no such record, or this token may not see it: {url}. "
                              "Check the course id, and that the token's user teaches the course.")
    if response.status_code >= 400:
        return SourceError(f"The courseware answered HTTP {response.status_code} for {url}: {error_text(response)}")
    return None
