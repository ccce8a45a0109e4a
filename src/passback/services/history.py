"""Run history as people read it: runs, and each item with its meaning, fix and a deep link.

The CLI's ``runs show`` and the Grade Sync page show the same explanation, built here.
"""

from __future__ import annotations

from typing import Any

from passback.errors import NotFound
from passback.rules.catalogue import CATALOGUE, entry
from passback.store.db import Store
from passback.store.connections import connection_refs
from passback.store.history import MULTI, get_run, get_run_items, list_runs, part_runs

ERRORS_AND_SKIPS = ("error", "skipped")


def deep_link(context: dict[str, Any]) -> str | None:
    """The item in the source's own UI: the student's grade, else the assignment."""
    course_url = context.get("course_url")
    if not course_url:
        return None
    if context.get("student_id") and context.get("assignment_id"):
        return (f"{course_url}/gradebook/speed_grader?assignment_id={context['assignment_id']}"
                f"&student_id={context['student_id']}")
    if context.get("assignment_id"):
        return f"{course_url}/assignments/{context['assignment_id']}"
    return None


def explain_item(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    code = item.get("code")
    if code and code in CATALOGUE:
        known = entry(code)
        context = item.get("context") or {}
        out.update(meaning=known.render_meaning(**context), fix=known.render_fix(**context),
                   seed_error=known.seed_error)
    link = deep_link(item.get("context") or {})
    if link:
        out["link"] = link
    return out


def recent_runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    return list_runs(store, limit)


def explain_run(store: Store, run: str, outcomes: tuple[str, ...] | None = ERRORS_AND_SKIPS) -> dict[str, Any]:
    """A run (by id or a unique prefix) and its items, errors first, each explained."""
    found = get_run(store, run)
    if found is None:
        raise NotFound(f"No run matches {run!r}; list them with `passback runs`.")
    if found.get("pipeline") == MULTI:  # one run to several destinations: every part's items, each naming its destination
        names = {c.id: c.name for c in connection_refs(store)}
        parts = part_runs(store, found["id"])
        items = [explain_item(item) | {"destination": names.get(part["destination_connection_id"]),
                                        "part_run_id": part["id"]}
                 for part in parts for item in get_run_items(store, part["id"], outcomes)]
        explained = sorted(items, key=lambda i: (i["outcome"] != "error", i["destination"] or "", i["id"]))
        return {"run": found, "items": explained,
                "parts": [{"run_id": p["id"], "destination": names.get(p["destination_connection_id"]),
                           "status": p["status"], "counts": p["counts"]} for p in parts]}
    items = get_run_items(store, found["id"], outcomes)
    explained = sorted((explain_item(item) for item in items), key=lambda i: (i["outcome"] != "error", i["id"]))
    return {"run": found, "items": explained}


def catalogue() -> list[dict[str, Any]]:
    """The error catalogue: every reason an item does not sync, with meaning and fix."""
    return [
        {"code": e.code, "seed_error": e.seed_error, "outcome": e.outcome, "message": e.message,
         "meaning": e.meaning, "fix": e.fix}
        for e in CATALOGUE.values()
    ]
