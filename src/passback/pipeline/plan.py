"""The planner: a course snapshot plus what was written before, turned into steps.

Pure and deterministic: the same snapshot, destination context and identity map give
the same plan, so a dry run shows exactly what a real run would write. Validation and
conversion happen here, through the pure rule and conversion modules.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from passback.convert.scores import convert_score
from passback.errors import NotFound
from passback.model import AssignedTo, Assignment, CourseSnapshot, Score
from passback.model.values import BLANK, AssignmentPayload, Capabilities, DestinationContext, Placement, ScorePayload
from passback.rules.assignment_rules import AssignmentRuleContext, check_assignment
from passback.rules.findings import Finding
from passback.rules.matching import (
    DEFAULT,
    CategoryTarget,
    Matching,
    category_in_section,
    match_categories,
    match_sections,
    match_students,
    unmatched_student,
)
from passback.rules.score_rules import check_score
from passback.store.identity import PENDING, IdentityIndex, IdentityRow

ASSIGNMENT = "assignment"
SCORE = "score"
DESCRIPTION_LIMIT = 4000

CREATE, UPDATE, DELETE, UNCHANGED, SKIP, ERROR = "create", "update", "delete", "unchanged", "skip", "error"
RELEASE = "release"  # the destination assignment is gone: forget the link, create anew next time
OUTCOME_OF = {
    CREATE: "created", UPDATE: "updated", DELETE: "deleted", UNCHANGED: "unchanged",
    SKIP: "skipped", ERROR: "error", RELEASE: "skipped",
}


@dataclass(frozen=True)
class Scope:
    """What a run covers: a whole course, one assignment, or one student."""

    course_id: str
    assignment_id: str | None = None
    student_id: str | None = None

    @property
    def whole_course(self) -> bool:
        return self.assignment_id is None and self.student_id is None


@dataclass(frozen=True)
class ScoreStep:
    key: str
    assignment_id: str
    student_id: str
    action: str
    section_id: str | None = None
    dest_section_id: str | None = None
    dest_student_id: str | None = None
    payload: ScorePayload | None = None
    previous: dict[str, Any] | None = None
    previous_dest_id: str | None = None  # where the last write went: a release must still find it there
    finding: Finding | None = None


@dataclass(frozen=True)
class AssignmentStep:
    key: str
    assignment_id: str
    name: str
    action: str
    payload: AssignmentPayload | None = None
    identity: IdentityRow | None = None
    findings: tuple[Finding, ...] = ()
    scores: tuple[ScoreStep, ...] = ()
    html_url: str | None = None

    @property
    def value_hash(self) -> str | None:
        return value_hash(self.payload.as_value()) if self.payload else None


@dataclass
class Plan:
    course_id: str
    course_url: str | None
    steps: list[AssignmentStep] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counter: Counter[str] = Counter()
        for step in self.steps:
            counter[OUTCOME_OF[step.action]] += 1
            for score in step.scores:
                counter[OUTCOME_OF[score.action]] += 1
        return {outcome: counter.get(outcome, 0) for outcome in OUTCOME_OF.values()}

    def writes(self) -> int:
        return sum(
            (step.action in (CREATE, UPDATE, DELETE))
            + sum(s.action in (CREATE, UPDATE, DELETE) for s in step.scores)
            for step in self.steps
        )


def value_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def assignment_key(course_id: str, assignment_id: str) -> str:
    return f"{course_id}:{assignment_id}"


def score_key(course_id: str, assignment_id: str, student_id: str) -> str:
    return f"{course_id}:{assignment_id}:{student_id}"


def plain_text(description: str | None) -> str:
    """Canvas descriptions are HTML; PowerTeacher Pro holds plain text up to 4000 characters."""
    if not description:
        return ""
    text = re.sub(r"<(br|/p|/div|/li)[^>]*>", "\n", description, flags=re.IGNORECASE)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n", text).strip()
    return text[:DESCRIPTION_LIMIT]


def local_due_date(assignment: Assignment, time_zone: str | None) -> date | None:
    if assignment.due_at is None:
        return None
    try:
        zone = ZoneInfo(time_zone) if time_zone else None
    except (ZoneInfoNotFoundError, ValueError):  # not an IANA name (a Rails name, a path): the instant's UTC date
        zone = None
    return assignment.due_at.astimezone(zone).date() if zone else assignment.due_at.date()


@dataclass(frozen=True)
class PlanInputs:
    snapshot: CourseSnapshot
    destination: DestinationContext
    identities: IdentityIndex
    capabilities: Capabilities
    district_title_limit: int
    scope: Scope
    course_url: str | None = None
    category_mappings: dict[str, str] = field(default_factory=dict)  # source category -> destination
    sync_switches: dict[str, bool] = field(default_factory=dict)  # assignment -> kept by passback
    today: date | None = None
    block_closed_terms: bool = True
    overwrite_drift: bool = False
    matching: Matching = DEFAULT  # how sections, students and categories match; the default: ids coincide


def resolve_categories(snapshot: CourseSnapshot, mappings: dict[str, str]) -> dict[str, str]:
    """Source category id -> destination category id: a saved mapping, else the import link."""
    resolved = {c.source_id: c.destination_ref for c in snapshot.categories if c.destination_ref}
    resolved.update({k: v for k, v in mappings.items() if any(c.source_id == k for c in snapshot.categories)})
    return resolved  # type: ignore[return-value]


def section_targets(snapshot: CourseSnapshot, dest: DestinationContext, placement: Placement,
                    matching: Matching = DEFAULT) -> dict[str, str]:
    """Source section id -> the destination section its grades land in.

    Where the destination keeps sections (an assignment spanning sections, or one item per
    class), a source section lands in the destination section it matches (by default: the
    one its SIS id names; see :mod:`passback.rules.matching`). Where it
    keeps one gradebook for the whole course, every section lands in that one place, so no
    source section can fail to match.
    """
    if placement is Placement.PER_COURSE:
        only = sorted(dest.sections)
        return {s.source_id: only[0] for s in snapshot.sections} if len(only) == 1 else {}
    return match_sections(snapshot.sections, dest.sections, matching)


class ScopeNotFound(NotFound):
    """The run names an assignment or a student the course does not have."""


def check_scope(snapshot: CourseSnapshot, scope: Scope) -> None:
    """A scope naming what the course lacks is an error naming it, not a run that quietly does nothing."""
    course = snapshot.course.source_id
    if scope.assignment_id and not any(a.source_id == scope.assignment_id for a in snapshot.assignments):
        raise ScopeNotFound(f"Course {course} has no assignment {scope.assignment_id}; "
                            f"`passback check --course {course}` lists its assignments.")
    if scope.student_id and not any(s.source_id == scope.student_id for s in snapshot.students):
        raise ScopeNotFound(f"Course {course} has no student {scope.student_id} enrolled.")


def build_plan(inputs: PlanInputs) -> Plan:
    snapshot, dest, scope = inputs.snapshot, inputs.destination, inputs.scope
    check_scope(snapshot, scope)
    course_id = snapshot.course.source_id
    sections_to_dest = section_targets(snapshot, dest, inputs.capabilities.placement, inputs.matching)
    categories = {c.source_id: c for c in snapshot.categories}
    targets = match_categories(snapshot.categories, inputs.category_mappings, inputs.matching)
    rule_ctx = AssignmentRuleContext(
        term=snapshot.course.term,
        categories=categories,
        mapped_category_ids=frozenset(targets),
        capabilities=inputs.capabilities,
        district_title_limit=inputs.district_title_limit,
        today=inputs.today if inputs.block_closed_terms else None,
    )
    student_sections = snapshot.student_sections()
    student_sis = {s.source_id: s.sis_id for s in snapshot.students}
    students_to_dest = match_students(snapshot.students, dest.student_ids, inputs.matching)
    scores_by_assignment: dict[str, list[Score]] = {}
    for score in snapshot.scores:
        scores_by_assignment.setdefault(score.assignment_id, []).append(score)

    plan = Plan(course_id=course_id, course_url=inputs.course_url)
    for assignment in sorted(snapshot.assignments, key=lambda a: int(a.source_id) if a.source_id.isdigit() else 0):
        if scope.assignment_id and assignment.source_id != scope.assignment_id:
            continue
        switch = inputs.sync_switches.get(assignment.source_id)
        if switch is not None and switch != assignment.sync:
            assignment = assignment.model_copy(update={"sync": switch})
        plan.steps.append(
            _plan_assignment(
                assignment, inputs, rule_ctx, targets, sections_to_dest, student_sections,
                student_sis, students_to_dest, scores_by_assignment.get(assignment.source_id, []),
            )
        )
    if scope.whole_course:
        present = {a.source_id for a in snapshot.assignments}
        held = [(key, row) for (kind, key), row in inputs.identities.items() if kind == ASSIGNMENT]
        for key, row in sorted(held, key=lambda item: item[0]):  # the assignments only, not their thousands of scores
            if row.dest_id is None:
                continue
            source_assignment = key.split(":", 1)[1]
            if source_assignment in present:
                continue
            gone = dest.holdings_known and row.dest_id not in dest.assignments
            plan.steps.append(AssignmentStep(
                key=key, assignment_id=source_assignment,
                name=(row.value or {}).get("name", source_assignment),
                action=RELEASE if gone else DELETE, identity=row,
            ))
    return plan


def extra_credit(assignment: Assignment, scores: list[Score], scheme: tuple) -> float:  # type: ignore[type-arg]
    """Points above points possible that students were given: the destination must allow them."""
    possible = assignment.points_possible or 0.0
    best = max((p.points for s in scores if (p := convert_score(s, assignment, scheme)) and p.points is not None),
               default=0.0)
    return round(max(0.0, best - possible), 4)


def _extra_credit(assignment: Assignment, scores: list[Score], inputs: PlanInputs,
                  identity: IdentityRow | None) -> float:
    """The allowance for the scores read; a narrowed read saw only some, so never less than what was sent."""
    found = extra_credit(assignment, scores, inputs.snapshot.grading_scheme)
    if inputs.snapshot.partial and identity is not None and identity.value:
        return max(found, float(identity.value.get("extra_credit_points") or 0.0))
    return found


def _plan_assignment(
    assignment: Assignment,
    inputs: PlanInputs,
    rule_ctx: AssignmentRuleContext,
    category_targets: dict[str, CategoryTarget],
    sections_to_dest: dict[str, str],
    student_sections: dict[str, tuple[str, ...]],
    student_sis: dict[str, str | None],
    students_to_dest: dict[str, str],
    scores: list[Score],
) -> AssignmentStep:
    course_id = inputs.snapshot.course.source_id
    dest = inputs.destination
    key = assignment_key(course_id, assignment.source_id)
    identity = inputs.identities.get((ASSIGNMENT, key))
    base = {"key": key, "assignment_id": assignment.source_id, "name": assignment.name,
            "identity": identity, "html_url": assignment.html_url}
    names = {"assignment_name": assignment.name, "assignment_id": assignment.source_id}
    findings = check_assignment(assignment, rule_ctx)
    if findings:
        return AssignmentStep(action=SKIP if findings[0].outcome == "skipped" else ERROR,
                              findings=tuple(findings), **base)

    source_sections = (
        assignment.section_ids if assignment.assigned_to is AssignedTo.SECTIONS
        else tuple(s.source_id for s in inputs.snapshot.sections)
    )
    dest_sections = tuple(sorted({sections_to_dest[s] for s in source_sections if s in sections_to_dest}))
    if not dest_sections:
        section = next((s for s in inputs.snapshot.sections if s.source_id in source_sections), None)
        finding = Finding("section-not-in-destination", names | {
            "section_name": section.name if section else "(none)",
            "section_sis_id": section.sis_id if section else None,
        })
        return AssignmentStep(action=ERROR, findings=(finding,), **base)

    if (identity is not None and identity.dest_id and identity.state != PENDING and dest.holdings_known
            and identity.dest_id not in dest.assignments):
        finding = Finding("destination-assignment-missing", names | {"dest_assignment_id": identity.dest_id})
        return AssignmentStep(action=RELEASE, findings=(finding,), **base)

    target = category_targets.get(assignment.category_id or "")
    category_ids: dict[str, str] = {}
    for dest_section in dest_sections if inputs.capabilities.has_categories else ():
        section_categories = dest.categories.get(dest_section, [])
        chosen = category_in_section(target, section_categories)
        valid = {c.dest_id for c in section_categories if c.active}
        if chosen is None or chosen not in valid:
            finding = Finding("category-not-valid-for-section", names | {
                "category_name": rule_ctx.categories[assignment.category_id or ""].name,
                "dest_section_id": dest_section,
            })
            return AssignmentStep(action=ERROR, findings=(finding,), **base)
        category_ids[dest_section] = chosen

    due = local_due_date(assignment, inputs.snapshot.course.time_zone)
    assert due is not None and assignment.points_possible is not None  # guaranteed by the rules
    payload = AssignmentPayload(
        section_ids=dest_sections,
        name=assignment.name,
        description=plain_text(assignment.description),
        due_date=due,
        points_possible=assignment.points_possible,
        extra_credit_points=_extra_credit(assignment, scores, inputs, identity),
        category_ids=category_ids,
    )
    ours = identity.dest_id if identity is not None else None
    pending = identity is not None and identity.state == PENDING
    for existing in dest.assignments.values():
        clash = (existing.dest_id != ours and existing.name == payload.name
                 and existing.due_date == payload.due_date.isoformat()
                 and set(existing.section_assignment_ids) & set(dest_sections))
        if clash and not pending:
            finding = Finding("duplicate-destination-assignment", names | {
                "due_date": payload.due_date.isoformat(), "dest_assignment_id": existing.dest_id})
            return AssignmentStep(action=ERROR, findings=(finding,), payload=payload, **base)

    if identity is None or pending or identity.dest_id is None:
        action = CREATE
    elif identity.value_hash != value_hash(payload.as_value()):
        action = UPDATE
    else:
        action = UNCHANGED

    held_asids = dict((identity.value or {}).get("section_assignment_ids", {})) if identity and not pending else {}
    steps = []
    for score in sorted(scores, key=lambda s: s.student_id):
        if inputs.scope.student_id and score.student_id != inputs.scope.student_id:
            continue
        steps.append(_plan_score(
            score, assignment, inputs, set(source_sections), sections_to_dest,
            student_sections.get(score.student_id, ()), student_sis.get(score.student_id), held_asids,
            students_to_dest.get(score.student_id),
        ))
    return AssignmentStep(action=action, payload=payload, scores=tuple(steps), **base)


def _plan_score(
    score: Score,
    assignment: Assignment,
    inputs: PlanInputs,
    assignment_sections: set[str],
    sections_to_dest: dict[str, str],
    enrolled_in: tuple[str, ...],
    sis_id: str | None,
    held_asids: dict[str, str],
    dest_student: str | None,
) -> ScoreStep:
    course_id = inputs.snapshot.course.source_id
    key = score_key(course_id, assignment.source_id, score.student_id)
    previous_row = inputs.identities.get((SCORE, key))
    previous = previous_row.value if previous_row else None
    section_id = next((s for s in enrolled_in if s in assignment_sections), None)
    dest_section = sections_to_dest.get(section_id or "")
    roster = inputs.destination.sections[dest_section].student_ids if dest_section else ()
    in_roster = dest_student is not None and dest_student in roster
    base = {
        "key": key, "assignment_id": assignment.source_id, "student_id": score.student_id,
        "section_id": section_id, "dest_section_id": dest_section, "dest_student_id": dest_student,
        "previous": previous, "previous_dest_id": previous_row.dest_id if previous_row else None,
    }
    written = previous is not None
    finding = check_score(
        score,
        section_id=section_id,
        dest_student_id=dest_student if in_roster else None,
        dest_assignment_section_id=dest_section if in_roster else None,
        previously_written=written,
    )
    if finding is not None and not (finding.code == "missing-not-sent" and written and in_roster):
        if finding.code == "student-not-in-destination-section":
            finding = Finding(finding.code, finding.context | {
                "dest_student_id": dest_student or unmatched_student(inputs.snapshot.students, sis_id),
                "dest_assignment_section_id": dest_section or "(no section)",
            })
        return ScoreStep(action=SKIP if finding.outcome == "skipped" else ERROR, finding=finding, **base)
    payload = None if finding is not None else convert_score(score, assignment, inputs.snapshot.grading_scheme)
    if payload is not None:
        payload = payload.held_by(inputs.capabilities.score_fields)
    if payload is None:
        if not written:
            return ScoreStep(action=SKIP, finding=Finding("student-not-graded", base_context(score, section_id)),
                             **base)
        wanted, action = BLANK, DELETE
    elif not written or previous_row is None or previous_row.state == PENDING:
        wanted, action = payload, CREATE
    elif previous != payload.as_value():
        wanted, action = payload, UPDATE
    else:
        wanted, action = payload, UNCHANGED
    drift = _drift(inputs, held_asids.get(dest_section or ""), dest_student, previous)
    if drift is not None:
        if not inputs.overwrite_drift:
            return ScoreStep(action=ERROR, finding=Finding("destination-changed-by-hand", {
                **base_context(score, section_id), "assignment_name": assignment.name,
                "held": _show(drift), "last_written": _show(previous), "source_value": _show(wanted.as_value()),
            }), **base)
        if action == UNCHANGED:
            action = UPDATE
    return ScoreStep(action=action, payload=wanted, **base)


def _drift(inputs: PlanInputs, asid: str | None, dest_student: str | None,
           previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the destination holds, when it is not what passback last wrote there."""
    if previous is None or asid is None or dest_student is None or not inputs.destination.holdings_known:
        return None
    held = inputs.destination.scores.get((asid, dest_student))
    held_value = held.as_value() if held is not None else BLANK.as_value()
    return None if held_value == previous else held_value


def _show(value: dict[str, Any] | None) -> str:
    if not value:
        return "blank"
    if value.get("exempt"):
        return "exempt"
    if value.get("points") is None:
        return "blank"
    return f"{value['points']:g}" + (" (late)" if value.get("late") else "")


def base_context(score: Score, section_id: str | None) -> dict[str, Any]:
    return {"student_id": score.student_id, "assignment_id": score.assignment_id, "section_id": section_id}
