"""Counting what the PowerSchool emulator took in, from its write log.

"Never doubled" is checked here on every write the emulator accepted (``app.state.writes``,
see :mod:`passback.emulators.write_log`), not on its state: the emulator refuses a second
assignment of the same name and due date, and a score is an upsert, so its state looks
the same whether a write came once or five times. Every function reads the raw requests
(their method, path and JSON body), none of passback's code.

A write whose answer the fault injection withheld (a ``timeout`` or ``reset`` after the
handler ran) is in the log too: it took effect. :func:`confirmed` takes those out, leaving
the writes whose answers reached the client.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

ASSIGNMENTS = "/ws/xte/section/assignment"
SCORES = "/ws/xte/score"


READS_BY_POST = ("/oauth/access_token", "/ws/xte/assignment/lookup")  # POSTs that change nothing


def changes(writes: Iterable[Any]) -> list[Any]:
    """The writes that change the gradebook: token requests and lookups (POSTs) left out."""
    return [w for w in writes if w.path.rstrip("/") not in READS_BY_POST]


def _json(body: bytes) -> Any:
    return json.loads(body) if body else None


def _is(write: Any, method: str, path: str) -> bool:
    return write.method == method and write.path.rstrip("/") == path


def assignment_creates(writes: Iterable[Any]) -> Counter[tuple[str, tuple[str, ...]]]:
    """Accepted assignment creates by (name, the sections it spans)."""
    counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for write in writes:
        if _is(write, "POST", ASSIGNMENTS):
            sections = _json(write.body)["_assignmentsections"]
            counts[(sections[0]["name"], tuple(sorted(str(s["sectionsdcid"]) for s in sections)))] += 1
    return counts


def assignment_changes(writes: Iterable[Any], method: str) -> Counter[str]:
    """Accepted ``PUT`` or ``DELETE`` of assignments, by assignment id."""
    counts: Counter[str] = Counter()
    for write in writes:
        if write.method == method and write.path.startswith(ASSIGNMENTS + "/") and write.path.rstrip("/") != ASSIGNMENTS:
            counts[write.path.rstrip("/").rsplit("/", 1)[1]] += 1
    return counts


def score_rows(writes: Iterable[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every score row of every accepted score write: (assignment section, student, row)."""
    rows = []
    for write in writes:
        if _is(write, "PUT", SCORES):
            for row in _json(write.body)["assignment_scores"]:
                asid = (row.get("_assignmentsection") or {}).get("assignmentsectionid") or row.get("assignmentsectionid")
                rows.append((str(asid), str(row["studentsdcid"]), row))
    return rows


def score_writes(writes: Iterable[Any]) -> Counter[tuple[str, str]]:
    """How many accepted score writes named each (assignment section, student)."""
    return Counter((asid, student) for asid, student, _ in score_rows(writes))


def confirmed(writes: list[Any], lost: Iterable[Any]) -> list[Any]:
    """The accepted writes less those whose answers were lost (``InjectedFault.lost_write``),
    matched by method, path, query and body: what the client was told took effect."""
    remaining = Counter((f.method, f.path, f.query, f.body) for f in lost if f.lost_write)
    kept = []
    for write in writes:
        key = (write.method, write.path, write.query, write.body)
        if remaining[key] > 0:
            remaining[key] -= 1
            continue
        kept.append(write)
    assert not +remaining, f"lost answers with no accepted write: {sorted(k[:2] for k in +remaining)}"
    return kept


def held_scores(state: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The emulator's raw scores by (assignment section, student)."""
    return {(str(s["assignmentsectionid"]), str(s["studentsdcid"])): s for s in state["scores"].values()}


def assignment_sections(state: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Assignment section id -> (assignment id, name, section dcid), from the raw state."""
    return {str(s["assignmentsectionid"]): (str(a["assignmentid"]), s["name"], str(s["sectionsdcid"]))
            for a in state["assignments"].values() for s in a["_assignmentsections"]}
