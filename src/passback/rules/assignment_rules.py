"""Seed 000's assignment requirements, checked before anything is sent.

Each rule looks at one assignment and the course around it and returns findings;
the first finding decides the item's outcome, the others are kept for the teacher.
Skips come first (a teacher who switched sync off wants no error about the name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from passback.model import AssignedTo, Assignment, Category, Term
from passback.model.values import Capabilities
from passback.rules.findings import Finding


@dataclass(frozen=True)
class AssignmentRuleContext:
    term: Term | None
    categories: dict[str, Category]
    mapped_category_ids: frozenset[str]  # source categories that have a destination category
    capabilities: Capabilities
    district_title_limit: int
    today: date | None = None  # set when the district closes terms to writes (R8)


def _names(assignment: Assignment) -> dict[str, object]:
    return {
        "assignment_name": assignment.name,
        "assignment_id": assignment.source_id,
        "due_date": assignment.due_at.date().isoformat() if assignment.due_at else None,
    }


def sync_switch(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if not assignment.sync:
        return [Finding("sync-off", _names(assignment))]
    return []


def published(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if not assignment.published:
        return [Finding("unpublished", _names(assignment))]
    return []


def mastery_paths(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if assignment.mastery_paths:
        return [Finding("mastery-paths", _names(assignment))]
    return []


def assigned_to(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if assignment.assigned_to is AssignedTo.INDIVIDUALS:
        return [Finding("assigned-to-individuals", _names(assignment))]
    return []


def name_length(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if not assignment.name.strip():
        return [Finding("name-missing", _names(assignment))]
    length = len(assignment.name)
    if length > ctx.capabilities.name_max_length:
        return [Finding("name-over-destination-limit", _names(assignment) | {"length": length})]
    limit = min(ctx.district_title_limit, ctx.capabilities.name_max_length)
    if length > limit:
        return [
            Finding(
                "name-over-district-limit",
                _names(assignment) | {"length": length, "limit": limit, "limit_plus_one": limit + 1},
            )
        ]
    return []


def points_possible(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if ctx.capabilities.requires_points_possible and assignment.points_possible is None:
        return [Finding("points-possible-none", _names(assignment))]
    if assignment.points_possible is not None and assignment.points_possible < 0:
        return [Finding("points-possible-negative", _names(assignment) | {"points_possible": assignment.points_possible})]
    return []


def due_date(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if assignment.due_at is None:
        return [Finding("due-date-missing", _names(assignment))]
    term = ctx.term
    if term is None or (term.start is None and term.end is None):
        return []
    due = assignment.due_at.date()
    if (term.start and due < term.start) or (term.end and due > term.end):
        return [
            Finding(
                "due-date-outside-term",
                _names(assignment)
                | {
                    "term_start": term.start.isoformat() if term.start else "open",
                    "term_end": term.end.isoformat() if term.end else "open",
                },
            )
        ]
    return []


def category(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    if not ctx.capabilities.has_categories:
        return []  # a destination without categories takes every assignment as it is
    group = ctx.categories.get(assignment.category_id or "")
    if group is None:
        return [Finding("grading-category-missing", _names(assignment))]
    if group.source_id not in ctx.mapped_category_ids:
        return [
            Finding("not-in-imported-group", _names(assignment) | {"category_name": group.name})
        ]
    return []


def term_open(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    term = ctx.term
    if ctx.today is not None and term is not None and term.end is not None and ctx.today > term.end:
        return [Finding("term-closed", _names(assignment) | {"term_name": term.name, "term_end": term.end.isoformat()})]
    return []


AssignmentRule = Callable[[Assignment, AssignmentRuleContext], list[Finding]]

def readable(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    """A column the source holds but passback could not read is reported, never dropped."""
    if assignment.unreadable:
        return [Finding("source-item-unsupported", _names(assignment) | {"reason": assignment.unreadable})]
    return []


RULES: tuple[AssignmentRule, ...] = (
    readable,
    sync_switch,
    published,
    term_open,
    mastery_paths,
    assigned_to,
    category,
    points_possible,
    name_length,
    due_date,
)


def check_assignment(assignment: Assignment, ctx: AssignmentRuleContext) -> list[Finding]:
    """Every finding for the assignment, skips first, in the order a teacher fixes them."""
    findings: list[Finding] = []
    for rule in RULES:
        found = rule(assignment, ctx)
        if found and found[0].outcome == "skipped":
            return found
        findings.extend(found)
    return findings
