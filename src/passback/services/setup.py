"""Course setup and readiness: what a teacher does before (and between) syncs.

Seed 000 step 2 (import categories), seed 001 steps C and D (map categories, link an
assignment to a new or an existing destination assignment), the per-assignment sync
switch, and a readiness check with one-action fixes. Each function reads both systems
through the route's connectors and changes only what it says it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from passback.errors import Invalid, NotFound
from passback.model import CourseSnapshot
from passback.model.values import AssignmentChanges, DestinationContext
from passback.pipeline.gradebook import load_matching, plan_course
from passback.pipeline.plan import ASSIGNMENT, SCORE, Plan, Scope, assignment_key
from passback.rules.catalogue import entry
from passback.rules.fixes import Fix, propose_fixes
from passback.rules.matching import category_in_section, match_categories
from passback.services.connections import OpenRoute, Route, open_route
from passback.services.matching import read_matched, unmatched
from passback.services.runs import run_options
from passback.settings import Settings
from passback.store.db import Store
from passback.store.setup_log import record_setup_change
from passback.store.identity import SYNCED, IdentityRow, delete_identities, load_identities, upsert_identities
from passback.store.setup import CategoryMapping, delete_mapping, load_mappings, load_switches, save_mapping, save_switch


class SetupError(Invalid):
    """A setup request that cannot be done as asked; the message says why and what to do."""


class SetupNotFound(NotFound):
    """A setup request names a course, category or assignment that is not there."""


async def _read_both(store: Store, opened: OpenRoute, course_id: str) -> tuple[CourseSnapshot, DestinationContext]:
    """The course, and the destination sections it matches (by the pair's matching rules and overrides)."""
    snapshot, context, _ = await read_matched(store, opened, course_id)
    return snapshot, context


def _dest_categories(context: DestinationContext) -> dict[str, Any]:
    """Active destination categories valid in every section of the course."""
    per_section = [{c.dest_id: c for c in cats if c.active} for cats in context.categories.values()]
    if not per_section:
        return {}
    common = set(per_section[0]).intersection(*per_section[1:])
    return {cid: per_section[0][cid] for cid in sorted(common)}


# --- categories (C1, C2) -----------------------------------------------------------------


async def import_categories(store: Store, settings: Settings, route: Route, course_id: str, *,
                            actor: str = "cli") -> list[dict[str, str]]:
    """Create, in the source course, every destination category it lacks: named exactly,
    marked imported. Existing imported groups are left alone, renamed or not."""
    async with open_route(store, settings, route) as opened:
        snapshot, context, matching = await read_matched(store, opened, course_id)
        present = {c.source_id: c for c in snapshot.categories}
        have = {c.destination_ref: c for c in snapshot.categories if c.destination_ref}
        for source_id, mapping in load_mappings(store, opened.pairing, course_id).items():
            if source_id in present:
                have.setdefault(mapping.dest_category_id, present[source_id])
        first_section = next(iter(context.categories.values()), [])
        for source_id, target in match_categories(snapshot.categories, {}, matching).items():
            found = category_in_section(target, first_section)  # a category the rule matches is there already
            if found is not None:
                have.setdefault(found, present[source_id])
        report = []
        for dest_id, category in _dest_categories(context).items():
            if dest_id in have:
                existing = have[dest_id]
                status = "present" if existing.name == category.name else "present, renamed in the source"
                report.append({"category": category.name, "status": status, "source_category_id": existing.source_id})
                continue
            new_id = await opened.source.create_category(course_id, category.name, dest_id)
            save_mapping(store, opened.pairing, course_id, CategoryMapping(new_id, category.name, dest_id, category.name))
            _changed(store, opened, course_id, "import_category", actor, source_category_id=new_id,
                     dest_category_id=dest_id, name=category.name)
            report.append({"category": category.name, "status": "imported", "source_category_id": new_id})
        return report


async def map_category(store: Store, settings: Settings, route: Route, course_id: str,
                       source_category_id: str, dest_category_id: str, *, actor: str = "cli") -> CategoryMapping:
    async with open_route(store, settings, route) as opened:
        snapshot, context = await _read_both(store, opened, course_id)
        source = next((c for c in snapshot.categories if c.source_id == source_category_id), None)
        if source is None:
            names = ", ".join(f"{c.source_id} ({c.name})" for c in snapshot.categories)
            raise SetupNotFound(f"Course {course_id} has no category {source_category_id}; its categories: {names}.")
        valid = _dest_categories(context)
        if dest_category_id not in valid:
            names = ", ".join(f"{k} ({v.name})" for k, v in valid.items())
            raise SetupError(
                f"Destination category {dest_category_id} is not an active category of every section of "
                f"course {course_id}; choose one of: {names}.")
        mapping = CategoryMapping(source.source_id, source.name, dest_category_id, valid[dest_category_id].name)
        save_mapping(store, opened.pairing, course_id, mapping)
        _changed(store, opened, course_id, "map_category", actor, source_category_id=source.source_id,
                 dest_category_id=dest_category_id)
        return mapping


async def unmap_category(store: Store, settings: Settings, route: Route, course_id: str,
                         source_category_id: str, *, actor: str = "cli") -> bool:
    async with open_route(store, settings, route) as opened:
        removed = delete_mapping(store, opened.pairing, course_id, source_category_id)
        if removed:
            _changed(store, opened, course_id, "unmap_category", actor, source_category_id=source_category_id)
        return removed


async def list_categories(store: Store, settings: Settings, route: Route, course_id: str) -> dict[str, Any]:
    """Each source category with where it goes, and every mapping problem with its fix."""
    async with open_route(store, settings, route) as opened:
        snapshot, context, matching = await read_matched(store, opened, course_id)
        mappings = load_mappings(store, opened.pairing, course_id)
    dest = {c.dest_id: c.name for cats in context.categories.values() for c in cats}
    matched = match_categories(snapshot.categories, {k: m.dest_category_id for k, m in mappings.items()}, matching)
    first_section = next(iter(context.categories.values()), [])
    targets = {k: category_in_section(t, first_section) for k, t in matched.items()}
    rows, problems = [], []
    for category in snapshot.categories:
        mapping = mappings.get(category.source_id)
        target = targets.get(category.source_id)
        row = {"source_category_id": category.source_id, "name": category.name,
               "destination_category_id": target, "destination_category": dest.get(target or ""),
               "via": matched[category.source_id].via if category.source_id in matched else None}
        if mapping and mapping.source_category_name != category.name:
            row["note"] = f"renamed from {mapping.source_category_name!r}; the mapping still holds"
        if target and target not in _dest_categories(context):
            problems.append({"source_category_id": category.source_id, "name": category.name,
                             "problem": "its destination category is inactive or not in every section",
                             "fix": entry("category-not-valid-for-section").fix})
        if not target:
            problems.append({"source_category_id": category.source_id, "name": category.name,
                             "problem": "not mapped and not imported",
                             "fix": f"passback categories map --course {course_id} "
                                    f"--category {category.source_id} --to DESTINATION_CATEGORY_ID"})
        rows.append(row)
    present = {c.source_id for c in snapshot.categories}
    for source_id, mapping in mappings.items():
        if source_id not in present:
            problems.append({"source_category_id": source_id, "name": mapping.source_category_name,
                             "problem": "mapped, but deleted in the source",
                             "fix": f"move its assignments to a mapped category, then "
                                    f"passback categories unmap --course {course_id} --category {source_id}"})
    return {"categories": rows, "problems": problems,
            "destination_categories": [{"id": k, "name": v.name} for k, v in _dest_categories(context).items()]}


# --- assignment links (C3) and the sync switch (C4) ---------------------------------------


async def link_assignment(store: Store, settings: Settings, route: Route, course_id: str,
                          assignment_id: str, dest_assignment_id: str, *, actor: str = "cli") -> dict[str, Any]:
    """Send this assignment to an existing destination assignment instead of a new one."""
    async with open_route(store, settings, route) as opened:
        snapshot, context = await _read_both(store, opened, course_id)
        if not any(a.source_id == assignment_id for a in snapshot.assignments):
            raise SetupNotFound(f"Course {course_id} has no assignment {assignment_id}.")
        existing = context.assignments.get(dest_assignment_id)
        if existing is None:
            raise SetupNotFound(
                f"The destination has no assignment {dest_assignment_id} in this course's sections; "
                "list them with `passback check --course " + course_id + "`.")
        key = assignment_key(course_id, assignment_id)
        taken = [k for (kind, k), row in load_identities(store, opened.pairing, (ASSIGNMENT,), f"{course_id}:").items()
                 if row.dest_id == dest_assignment_id and k != key]
        if taken:
            raise SetupError(f"Destination assignment {dest_assignment_id} is already linked to {taken[0]}; "
                             "unlink that first.")
        _relink(store, opened, key, IdentityRow(
            ASSIGNMENT, key, dest_assignment_id, None,
            {"section_assignment_ids": existing.section_assignment_ids}, SYNCED,
            natural_key={"origin": "linked", "linked_at": datetime.now(UTC).isoformat()},
        ))
        _changed(store, opened, course_id, "link_assignment", actor, assignment_id=assignment_id,
                 dest_assignment_id=dest_assignment_id)
        return {"assignment_id": assignment_id, "linked_to": dest_assignment_id, "name": existing.name}


async def unlink_assignment(store: Store, settings: Settings, route: Route, course_id: str,
                            assignment_id: str, *, actor: str = "cli") -> bool:
    """Forget where this assignment went (the destination keeps what it holds)."""
    async with open_route(store, settings, route) as opened:
        key = assignment_key(course_id, assignment_id)
        had = (ASSIGNMENT, key) in load_identities(store, opened.pairing, (ASSIGNMENT,), key)
        _relink(store, opened, key, None)
        if had:
            _changed(store, opened, course_id, "unlink_assignment", actor, assignment_id=assignment_id)
        return had


def _changed(store: Store, opened: OpenRoute, course_id: str, action: str, actor: str, **detail: Any) -> None:
    """Keep who changed the course's setup, and what (ids and names only)."""
    record_setup_change(store, opened.pairing, course_id, action, actor, detail)


def _relink(store: Store, opened: OpenRoute, key: str, row: IdentityRow | None) -> None:
    scores = load_identities(store, opened.pairing, (SCORE,), key + ":")
    with store.transaction() as db:
        delete_identities(db, opened.pairing, [(ASSIGNMENT, key), *scores])
        if row is not None:
            upsert_identities(db, store, opened.pairing, [row])


async def set_switch(store: Store, settings: Settings, route: Route, course_id: str, assignment_id: str,
                     on: bool, *, actor: str = "cli") -> str:
    """Turn "sync to SIS" on or off: in the source where it has the switch, else in passback."""
    async with open_route(store, settings, route) as opened:
        if opened.source.has_sync_switch:
            await opened.source.update_assignment(course_id, assignment_id, AssignmentChanges(sync=on))
            where = "source"
        else:
            save_switch(store, opened.pairing.source_connection_id, course_id, assignment_id, on)
            where = "passback"
        _changed(store, opened, course_id, "switch", actor, assignment_id=assignment_id, on=on, kept_in=where)
        return where


# --- readiness (B4) --------------------------------------------------------------------------


@dataclass
class Readiness:
    course_id: str
    assignments: list[dict[str, Any]] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)  # sections, students, categories; each with its fix
    destination_assignments: dict[str, str] = field(default_factory=dict)  # id -> name: where an assignment may link
    course_name: str | None = None

    @property
    def ready(self) -> int:
        return sum(1 for a in self.assignments if a["status"] == "ready")


async def check_course(store: Store, settings: Settings, route: Route, course_id: str) -> Readiness:
    async with open_route(store, settings, route) as opened:
        return await _readiness(store, settings, opened, course_id)


async def _readiness(store: Store, settings: Settings, opened: OpenRoute, course_id: str) -> Readiness:
    snapshot = await opened.source.read_course(course_id)
    plan: Plan
    plan, context = await plan_course(store, opened.connectors, opened.pairing, Scope(course_id=course_id),
                                      run_options(settings, store), snapshot=snapshot)
    readiness = Readiness(course_id, course_name=snapshot.course.name)
    readiness.destination_assignments = {k: a.name for k, a in sorted(context.assignments.items(),
                                                                       key=lambda kv: kv[1].name)}
    links = {key.split(":", 1)[1]: row.dest_id for (_, key), row in
             load_identities(store, opened.pairing, (ASSIGNMENT,), f"{course_id}:").items()}
    kept = {} if opened.source.has_sync_switch else load_switches(store, opened.pairing.source_connection_id, course_id)
    blocked = []
    by_id = {a.source_id: a for a in snapshot.assignments}
    for step in plan.steps:
        status = {"skip": "skipped", "error": "blocked", "release": "link released"}.get(step.action, "ready")
        score_errors = [s.finding for s in step.scores if s.finding is not None and s.action == "error"]
        readiness.assignments.append({
            "assignment_id": step.assignment_id, "name": step.name, "status": status, "action": step.action,
            "findings": [{"code": f.code, "message": f.message, "fix": entry(f.code).render_fix(**f.context)}
                         for f in step.findings],
            "student_errors": len(score_errors),
            "sync": kept.get(step.assignment_id, by_id[step.assignment_id].sync if step.assignment_id in by_id else True),
            "linked_to": links.get(step.assignment_id),
        })
        if step.findings and step.assignment_id in by_id:
            blocked.append((by_id[step.assignment_id], list(step.findings)))
    mappings = {k: m.dest_category_id for k, m in load_mappings(store, opened.pairing, course_id).items()}
    matching = load_matching(store, opened.pairing, course_id)
    targets = match_categories(snapshot.categories, mappings, matching)
    readiness.unmatched = unmatched(course_id, snapshot, context, opened.destination.capabilities, mappings, matching)
    readiness.fixes = propose_fixes(
        blocked, limit=min(settings.district_title_limit, opened.destination.capabilities.name_max_length),
        categories={c.source_id: c for c in snapshot.categories}, mapped_category_ids=frozenset(targets),
    )
    return readiness


async def apply_fixes(store: Store, settings: Settings, route: Route, course_id: str,
                      fixes: list[Fix], *, actor: str = "cli") -> list[dict[str, str]]:
    async with open_route(store, settings, route) as opened:
        done = []
        for fix in fixes:
            changes = fix.changes
            if changes.sync is not None and not opened.source.has_sync_switch:
                save_switch(store, opened.pairing.source_connection_id, course_id, fix.assignment_id, changes.sync)
                changes = AssignmentChanges(changes.name, changes.points_possible, changes.category_id, None)
            await opened.source.update_assignment(course_id, fix.assignment_id, changes)
            _changed(store, opened, course_id, "fix", actor, assignment_id=fix.assignment_id, code=fix.code,
                     applied=fix.changes.described())
            done.append({"assignment_id": fix.assignment_id, "applied": fix.changes.described()})
        return done



async def apply_fix(store: Store, settings: Settings, route: Route, course_id: str, assignment_id: str, code: str, *,
                    actor: str) -> dict[str, str]:
    """Apply the one fix the readiness check proposes now for this assignment and error (a page's button)."""
    async with open_route(store, settings, route) as opened:
        readiness = await _readiness(store, settings, opened, course_id)
    wanted = [f for f in readiness.fixes if f.assignment_id == assignment_id and f.code == code]
    if not wanted:
        raise SetupNotFound(f"There is no fix to apply for {code} on assignment {assignment_id} now; "
                            "it may have been fixed already. Reload the page.")
    return (await apply_fixes(store, settings, route, course_id, wanted[:1], actor=actor))[0]
