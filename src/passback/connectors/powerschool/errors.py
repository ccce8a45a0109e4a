"""PowerSchool's refusals in passback's terms: the class says what happened, the code which text to show.

PowerTeacher Pro answers a refused write with a message (and sometimes a list of field
errors); the seed's Grade Sync errors quote those messages, so each known message maps
to a catalogue code here, and the kind of refusal to an error class.
"""

from __future__ import annotations

import httpx

from passback.errors import AlreadyExists, DestinationError, Refused, TargetGone

REFUSALS = (
    ("Value may not contain more than", "name-over-destination-limit"),
    ("Score entry points is required", "points-possible-none"),
    ("TeacherCategoryID is not active", "category-not-valid-for-section"),
    ("An assignment already exists", "duplicate-destination-assignment"),
    ("does not have an AssignmentStudentAssociation", "student-not-in-destination-section"),
    ("Unable to find com.pearson.powerschool.xte.model.AssignmentSection", "destination-assignment-missing"),
)
ERROR_CLASS: dict[str, type[DestinationError]] = {
    "duplicate-destination-assignment": AlreadyExists,
    "destination-assignment-missing": TargetGone,
}


def refusal_code(text: str) -> str:
    for needle, code in REFUSALS:
        if needle in text:
            return code
    return "destination-rejected"


def refusal_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    parts = [str(body.get("message", ""))] if isinstance(body, dict) else []
    for error in (body.get("errors") or []) if isinstance(body, dict) else []:
        parts.append(" ".join(str(error.get(k, "")) for k in ("field", "code") if error.get(k)))
    return "; ".join(p for p in parts if p)


def refused(response: httpx.Response) -> DestinationError:
    """The typed error a refusal means: gone, already there, or refused with its catalogue code."""
    text = refusal_text(response)
    code = refusal_code(text)
    if response.status_code == 404:
        return TargetGone(None, text, 404)
    return ERROR_CLASS.get(code, Refused)(code, text, response.status_code)
