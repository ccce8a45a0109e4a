"""What the Ed-Fi ODS/API's answers mean, as passback's typed errors and catalogue codes.

One place for the rule, so the client (reads), the libcurl stream (bulk POSTs) and the
careful one-by-one path (deletes, leftovers) judge an answer alike.
"""

from __future__ import annotations

from passback.errors import Refused

REFUSALS = frozenset({400, 404, 409, 412})
"""Answers that are the ODS's verdict on a record, final: repeating the request cannot change them
(a 5xx, a 429 or no answer at all is retried instead)."""


def refusal_code(status: int) -> str:
    """The catalogue code of a refused write: a 409 is a reference the ODS does not hold."""
    return "edfi-unresolved-reference" if status == 409 else "destination-rejected"


def not_an_ods(base_url: str) -> Refused:
    return Refused(None, f"{base_url} does not look like an Ed-Fi ODS/API (no urls in its root document); check "
                         "the connection's URL (the API's base, e.g. https://ods.example.org/api).")


def read_refused(url: str, status: int, offset: int | None = None) -> Refused:
    where = f"{url} offset {offset}" if offset is not None else url
    return Refused(None, f"GET {where}: HTTP {status}", status)
