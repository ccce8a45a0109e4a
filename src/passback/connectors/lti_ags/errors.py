"""An LTI Advantage platform's refusals in passback's terms: the class says what happened, the code which text to show.

Canvas answers its LTI Advantage services in three shapes, and a refusal's text is read
out of whichever came: ``{"errors": {"type": "unauthorized", "message": "..."}}`` (the
services' own checks: token, scope, score rules), ``{"errors": [{"message": "..."}]}``
(Canvas's general API errors, such as a 404) and ``{"errors": {"title": [{"message": ...}]}}``
(a record Canvas would not save). A token endpoint answers OAuth's ``error`` and
``error_description``. Known texts map to catalogue codes here; the HTTP status picks
the class (gone, credentials, refused), never the text.
"""

from __future__ import annotations

from typing import Any

import httpx

from passback.errors import AuthRefused, DestinationError, Refused, TargetGone

REFUSALS = (
    ("User not found in course or is not a student", "student-not-in-destination-section"),
    ("is too long", "name-over-destination-limit"),
)
AUTH_FIX = ("Check that the developer key is on and deployed in the course, that it has the Assignment and Grade "
            "Services and Names and Role scopes, and save the AGS connection again from the LTI platform's page.")


def refusal_code(text: str) -> str:
    for needle, code in REFUSALS:
        if needle in text:
            return code
    return "destination-rejected"


def _messages(errors: Any) -> list[str]:
    if isinstance(errors, dict):
        if "message" in errors:
            return [str(errors["message"])]
        found = []
        for field, entries in errors.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                message = entry.get("message", entry) if isinstance(entry, dict) else entry
                found.append(f"{field} {message}")
        return found
    if isinstance(errors, list):
        return [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    return [str(errors)] if errors else []


def refusal_text(response: httpx.Response) -> str:
    """The platform's own words for a refusal, whichever of its shapes the body has."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return str(body)[:300]
    parts = _messages(body.get("errors"))
    if body.get("error"):
        parts.append(str(body["error"]) + (f" ({body['error_description']})" if body.get("error_description") else ""))
    if body.get("message") and not parts:
        parts.append(str(body["message"]))
    return "; ".join(p for p in parts if p) or f"HTTP {response.status_code}"


def refused(response: httpx.Response) -> DestinationError:
    """The typed error an answer means: gone (404), the tool's access refused (401, 403), or refused with its code."""
    text = refusal_text(response)
    status = response.status_code
    if status == 404:
        return TargetGone(None, f"The platform has no such line item or course any more ({text}).", 404)
    if status in (401, 403):
        return AuthRefused(None, f"The platform refused passback's access token ({text}). {AUTH_FIX}", status)
    return Refused(refusal_code(text), text, status)
