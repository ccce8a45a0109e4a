"""OneRoster's refusals in passback's terms: the class says what happened, the code which text to show.

A OneRoster server explains a refusal in the 1EdTech status body (``imsx_codeMajor``,
``imsx_severity``, ``imsx_description`` and a ``imsx_CodeMinor`` field such as
``invaliddata``, ``unknownobject``, ``forbidden``), at the top level or inside
``imsx_statusInfo`` / ``statusInfoSet``. The description is what the server's people wrote;
the known texts map to catalogue codes here. PowerSchool serves the OneRoster 1.1 API that
Canvas's own passback speaks, and seed 000's Grade Sync errors quote its texts (a name over
50 characters, an assignment already there, a student with no AssignmentStudentAssociation),
so those texts keep their seed codes.
"""

from __future__ import annotations

from typing import Any

import httpx

from passback.errors import AlreadyExists, AuthRefused, DestinationError, Refused, TargetGone

REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Value may not contain more than",), "name-over-destination-limit"),
    (("An assignment already exists",), "duplicate-destination-assignment"),
    (("does not have an AssignmentStudentAssociation",), "student-not-in-destination-section"),
    (("is not enrolled",), "student-not-in-destination-section"),
    (("category", "not active"), "category-not-valid-for-section"),
    (("category", "tobedeleted"), "category-not-valid-for-section"),
)
"""Texts a server writes (every part, case-insensitive) and the catalogue code each means."""

ERROR_CLASS: dict[str, type[DestinationError]] = {
    "duplicate-destination-assignment": AlreadyExists,
}
SCOPES_MISSING = "destination-scope-missing"


def status_info(body: Any) -> dict[str, Any]:
    """The 1EdTech status fields of an answer, wherever the server put them."""
    if not isinstance(body, dict):
        return {}
    for key in ("imsx_statusInfo", "imsx_StatusInfo"):
        if isinstance(body.get(key), dict):
            return body[key]
    infos = body.get("statusInfoSet") or body.get("imsx_statusInfoSet")
    if isinstance(infos, list) and infos and isinstance(infos[0], dict):
        return infos[0]
    return body


def code_minor(info: dict[str, Any]) -> str:
    """The ``imsx_codeMinorFieldValue`` of a status (``invaliddata``, ``unknownobject``...), or ''."""
    minor = info.get("imsx_CodeMinor") or info.get("imsx_codeMinor") or {}
    fields = minor.get("imsx_codeMinorField") if isinstance(minor, dict) else None
    if isinstance(fields, list) and fields and isinstance(fields[0], dict):
        return str(fields[0].get("imsx_codeMinorFieldValue") or "")
    return ""


def refusal_text(response: httpx.Response) -> str:
    """What the server said, for the run history: its description and minor code, or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    info = status_info(body)
    description = str(info.get("imsx_description") or info.get("message") or info.get("error_description")
                      or info.get("error") or "")
    minor = code_minor(info)
    text = f"{description} ({minor})" if description and minor else description or minor
    return text or f"HTTP {response.status_code}"


def refusal_code(text: str) -> str:
    lowered = text.casefold()
    for needles, code in REFUSALS:
        if all(needle.casefold() in lowered for needle in needles):
            return code
    return "destination-rejected"


def refused(response: httpx.Response, what: str = "") -> DestinationError:
    """The typed error an answer means: gone, already there, scopes missing, credentials, or refused."""
    text = refusal_text(response)
    detail = f"{what}: {text}" if what else text
    status = response.status_code
    if status == 404:
        return TargetGone(None, detail, 404)
    if status == 401:
        return AuthRefused(None, f"The OneRoster server refused passback's token ({detail}). "
                                 "Check the client id and secret and save the connection again.", 401)
    if status == 403:
        return Refused(SCOPES_MISSING, detail, 403)
    code = refusal_code(text)
    return ERROR_CLASS.get(code, Refused)(code, detail, status)


def duplicate(title: str, due: str) -> AlreadyExists:
    """Seed error 2 in the words PowerSchool's OneRoster server uses for it."""
    return AlreadyExists(None, f"An assignment already exists with this name {title} and due date {due} "
                               "for one or more classes")


def gone(line_item: str) -> TargetGone:
    return TargetGone(None, f"The lineItem {line_item} is no longer in the OneRoster gradebook.", 404)
