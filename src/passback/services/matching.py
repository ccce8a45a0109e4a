"""Matching sections, students and categories between a source and a destination.

A rule per connection pair and kind (which source field, cut how, against which
destination field) and overrides by hand for single sections and students; both kept in
the store, decided by the pure functions of :mod:`passback.rules.matching`, used by the
planner. Categories are overridden by hand through the category mappings
(``passback categories map``). :func:`unmatched` lists, for ``passback check``, every
section, student and category of a course that matches nothing, each with the command
that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from passback.errors import Invalid, NotFound
from passback.model import CourseSnapshot
from passback.model.values import Capabilities, DestinationContext
from passback.pipeline.gradebook import load_matching
from passback.pipeline.plan import section_targets
from passback.rules.matching import (
    CATEGORY,
    KINDS,
    SECTION,
    STUDENT,
    Matching,
    MatchRule,
    MatchRuleError,
    category_in_every_section,
    category_value,
    destination_section_ids,
    key_of,
    match_categories,
    match_student,
    rule_from,
    same_name,
    section_value,
    student_value,
    wanted_section,
)
from passback.services.connections import OpenRoute, Route, load, open_route
from passback.settings import Settings
from passback.store.db import Store
from passback.store.identity import Pairing
from passback.store.setup import (
    MatchOverride,
    delete_match_override,
    delete_match_rule,
    load_match_overrides,
    load_match_rules,
    save_match_override,
    save_match_rule,
)

RULE_HINT = ("when the ids differ the same way for every {kind}, one rule matches them all: "
             "passback match rule {kind} [--strip-prefix P] [--strip-suffix S] [--pattern REGEX]")


class MatchError(Invalid):
    """A matching request that cannot be done as asked; the message says why and what to do."""


class MatchNotFound(NotFound):
    """A matching request names a course, section or student that is not there."""


def _pairing(store: Store, settings: Settings, route: Route) -> Pairing:
    return Pairing(load(store, settings, route.source).id, load(store, settings, route.destination).id)


async def read_matched(store: Store, opened: OpenRoute,
                       course_id: str) -> tuple[CourseSnapshot, DestinationContext, Matching]:
    """A course from the source, and the destination's side of it as the pair's matching finds it."""
    snapshot = await opened.source.read_course(course_id)
    matching = load_matching(store, opened.pairing, course_id)
    context = await opened.destination.load_context(destination_section_ids(snapshot.sections, matching))
    return snapshot, context, matching


# --- rules ---------------------------------------------------------------------------------------


def make_rule(kind: str, source_field: str | None = None, dest_field: str | None = None,
              pattern: str | None = None, strip_prefix: str | None = None,
              strip_suffix: str | None = None) -> MatchRule:
    try:
        return MatchRule(kind, source_field or "", dest_field or "", pattern or None, strip_prefix or "",
                         strip_suffix or "")
    except MatchRuleError as exc:
        raise MatchError(str(exc)) from exc


def set_rule(store: Store, settings: Settings, route: Route, rule: MatchRule) -> MatchRule:
    """Keep the pair's rule for the rule's kind; the next sync and check use it."""
    pairing = _pairing(store, settings, route)
    if rule.is_default:
        delete_match_rule(store, pairing, rule.kind)
    else:
        save_match_rule(store, pairing, rule.kind, {k: v for k, v in rule.as_value().items() if k != "kind"})
    return rule


def clear_rule(store: Store, settings: Settings, route: Route, kind: str) -> bool:
    """Back to matching as passback always did for this kind."""
    if kind not in KINDS:
        raise MatchError(f"Unknown kind {kind!r}; say one of: {', '.join(KINDS)}.")
    return delete_match_rule(store, _pairing(store, settings, route), kind)


# --- overrides by hand -----------------------------------------------------------------------------


async def override_section(store: Store, settings: Settings, route: Route, course_id: str,
                           source_section_id: str, dest_section_id: str) -> dict[str, Any]:
    """Send one source section's grades to this destination section, whatever the rule says."""
    async with open_route(store, settings, route) as opened:
        snapshot = await opened.source.read_course(course_id)
        section = next((s for s in snapshot.sections if s.source_id == source_section_id), None)
        if section is None:
            names = ", ".join(f"{s.source_id} ({s.name})" for s in snapshot.sections) or "none"
            raise MatchNotFound(f"Course {course_id} has no section {source_section_id}; its sections: {names}.")
        context = await opened.destination.load_context([dest_section_id])
        found = context.sections.get(dest_section_id)
        if found is None:
            raise MatchNotFound(f"The destination has no section {dest_section_id}; give its section id "
                                "(for PowerSchool, the section's DCID).")
        save_match_override(store, opened.pairing, MatchOverride(SECTION, course_id, section.source_id,
                                                                 dest_section_id, section.name))
        return {"source_section_id": section.source_id, "name": section.name, "to": dest_section_id,
                "destination_name": found.name}


async def override_student(store: Store, settings: Settings, route: Route, source_student_id: str,
                           dest_student_id: str, course_id: str | None = None) -> dict[str, Any]:
    """Send one source student's grades to this destination student, in every course of the pair.

    With ``course_id`` the student and the destination student are checked first in that
    course (and a destination student number is taken for the student it names).
    """
    if course_id is None:
        pairing = _pairing(store, settings, route)
        save_match_override(store, pairing, MatchOverride(STUDENT, "", source_student_id, dest_student_id))
        return {"source_student_id": source_student_id, "to": dest_student_id, "checked": False}
    async with open_route(store, settings, route) as opened:
        snapshot, context, _ = await read_matched(store, opened, course_id)
        student = next((s for s in snapshot.students if s.source_id == source_student_id), None)
        if student is None:
            raise MatchNotFound(f"Course {course_id} has no student {source_student_id}.")
        dest = dest_student_id
        if dest not in set(context.student_ids.values()):
            if dest not in context.student_ids:
                raise MatchNotFound(
                    f"The destination has no student {dest_student_id} in the schools of course {course_id}'s "
                    "sections; give the destination's student id (or its student number).")
            dest = context.student_ids[dest]
        save_match_override(store, opened.pairing, MatchOverride(STUDENT, "", student.source_id, dest, student.name))
        return {"source_student_id": student.source_id, "name": student.name, "to": dest, "checked": True}


def remove_section_override(store: Store, settings: Settings, route: Route, course_id: str,
                                  source_section_id: str) -> bool:
    return delete_match_override(store, _pairing(store, settings, route), SECTION, course_id, source_section_id)


def remove_student_override(store: Store, settings: Settings, route: Route, source_student_id: str) -> bool:
    return delete_match_override(store, _pairing(store, settings, route), STUDENT, "", source_student_id)


def list_matching(store: Store, settings: Settings, route: Route, course_id: str | None = None) -> dict[str, Any]:
    """The pair's rule for every kind (the default where none was set) and its overrides."""
    pairing = _pairing(store, settings, route)
    stored = {r["kind"]: rule_from(r) for r in load_match_rules(store, pairing)}
    rules = []
    for kind in KINDS:
        rule = stored.get(kind) or MatchRule(kind)
        rules.append({**rule.as_value(), "set": kind in stored, "described": rule.described()})
    overrides = [{"kind": o.kind, "course_id": o.course_id or None, "source_id": o.source_id,
                  "source_name": o.source_name, "to": o.dest_id}
                 for o in load_match_overrides(store, pairing, course_id)]
    return {"rules": rules, "overrides": overrides}


# --- readiness: what matches nothing ----------------------------------------------------------------


def unmatched(course_id: str, snapshot: CourseSnapshot, context: DestinationContext, capabilities: Capabilities,
              mappings: Mapping[str, str], matching: Matching) -> list[dict[str, Any]]:
    """Every section, student and category of the course that matches nothing, with its fix.

    Students are looked at in the sections that matched (a student of an unmatched section
    waits for the section's fix); categories only where the destination has categories.
    """
    items: list[dict[str, Any]] = []
    sections = section_targets(snapshot, context, capabilities.placement, matching)
    rule = matching.rule(SECTION)
    for section in snapshot.sections:
        if section.source_id in sections:
            continue
        value, wanted = section_value(section, rule.source_field), wanted_section(section, matching)
        hand = matching.override(SECTION, section.source_id)
        if hand is not None:
            problem = f"overridden by hand to {hand}, which the destination does not have"
        elif value is None:
            problem = f"it has no {rule.source_field}"
        elif wanted is None:
            problem = f"its {rule.source_field} {value!r} does not fit the rule ({rule.described()})"
        else:
            problem = f"the destination has no section {wanted!r}"
        items.append({"kind": SECTION, "source_id": section.source_id, "name": section.name, "source_value": value,
                      "looked_for": wanted, "problem": problem,
                      "fix": f"passback match section --course {course_id} --source-section {section.source_id} "
                             "--to DEST_SECTION_ID",
                      "hint": RULE_HINT.format(kind=SECTION) if hand is None else None})

    matched_sections = set(sections)
    enrolled = snapshot.student_sections()
    known = frozenset(context.student_ids.values())
    rule = matching.rule(STUDENT)
    for student in snapshot.students:
        if not matched_sections.intersection(enrolled.get(student.source_id, ())):
            continue
        if match_student(student, context.student_ids, matching, known) is not None:
            continue
        value, hand = student_value(student, rule.source_field), matching.override(STUDENT, student.source_id)
        wanted = key_of(rule, value)
        if hand is not None:
            problem = f"overridden by hand to {hand}"  # an override is taken as it is: it never fails here
        elif value is None:
            problem = f"they have no {rule.source_field}"
        elif wanted is None:
            problem = f"their {rule.source_field} {value!r} does not fit the rule ({rule.described()})"
        else:
            problem = f"the destination has no student with {rule.dest_field} {wanted!r}"
        items.append({"kind": STUDENT, "source_id": student.source_id, "name": student.name, "source_value": value,
                      "looked_for": wanted, "problem": problem,
                      "fix": f"passback match student --source-student {student.source_id} --to DEST_STUDENT_ID",
                      "hint": RULE_HINT.format(kind=STUDENT)})

    if not capabilities.has_categories:
        return items
    matched_categories = {s: context.categories.get(s, []) for s in dict.fromkeys(sections.values())}
    every: dict[str, Any] | None = None  # destination categories active in every matched section, by id
    for cats in matched_categories.values():
        active = {c.dest_id: c for c in cats if c.active}
        every = active if every is None else {k: v for k, v in every.items() if k in active}
    targets = match_categories(snapshot.categories, mappings, matching)
    rule = matching.rule(CATEGORY)
    in_use = {a.category_id for a in snapshot.assignments if a.sync}
    for category in snapshot.categories:
        target = targets.get(category.source_id)
        if target is not None and (not matched_categories or category_in_every_section(target, matched_categories)):
            continue
        if target is None:
            value = category_value(category, rule.source_field)
            if rule.is_default:
                problem = "not imported from the destination and not mapped"
            elif value is None:
                problem = f"it has no {rule.source_field}"
            else:
                problem = f"its {rule.source_field} {value!r} does not fit the rule ({rule.described()})"
        else:
            problem = (f"its destination category ({target.dest_field} {target.key!r}, by {target.via}) is not "
                       "an active category of every matched section")
        same = next((c for c in (every or {}).values() if same_name(c.name, category.name)), None)
        items.append({"kind": CATEGORY, "source_id": category.source_id, "name": category.name,
                      "source_value": category_value(category, rule.source_field),
                      "looked_for": target.key if target else None, "problem": problem,
                      "in_use": category.source_id in in_use,
                      "fix": f"passback categories map --course {course_id} --category {category.source_id} "
                             f"--to {same.dest_id if same else 'DEST_CATEGORY_ID'}",
                      "hint": None})
    return items
