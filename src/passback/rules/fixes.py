"""Safe fixes (B4): for each blocking finding, the one change that clears it, if any.

Pure: given the course and the findings, propose changes; applying them is the
caller's job, after the teacher confirmed. A finding with no safe fix gets none (a due
date is the teacher's decision, not ours).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from passback.model.values import AssignmentChanges
from passback.model import Assignment, Category
from passback.rules.findings import Finding

SWITCH_OFF_CODES = frozenset({"assigned-to-individuals", "mastery-paths"})


@dataclass(frozen=True)
class Fix:
    assignment_id: str
    assignment_name: str
    code: str
    changes: AssignmentChanges

    @property
    def described(self) -> str:
        return f"{self.assignment_name}: {self.changes.described()} (clears {self.code})"


def _cut(name: str, limit: int) -> str:
    """At most ``limit`` characters, ending on a word where that keeps most of the name."""
    if len(name) <= limit:
        return name
    cut = name[:limit]
    space = cut.rfind(" ")
    if name[limit] != " " and space >= limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" :;,.-")


def shorten_name(name: str, limit: int, taken: Iterable[str]) -> str:
    """The name cut to ``limit`` characters, made unique among ``taken`` with a counter."""
    used = {t.casefold() for t in taken}
    base = _cut(name, limit)
    if base.casefold() not in used:
        return base
    for counter in range(2, 1000):
        suffix = f" {counter}"
        candidate = _cut(name, limit - len(suffix)) + suffix
        if candidate.casefold() not in used:
            return candidate
    raise ValueError(f"no unique short name for {name!r}")


def mapped_category_for(current: Category | None, mapped: list[Category]) -> Category | None:
    """The mapped category an unmapped assignment belongs in: same name, else the only one."""
    if current is not None:
        same = [c for c in mapped if c.name.strip().casefold() == current.name.strip().casefold()]
        if len(same) == 1:
            return same[0]
    return mapped[0] if len(mapped) == 1 else None


def propose_fixes(
    assignments: list[tuple[Assignment, list[Finding]]],
    *,
    limit: int,
    categories: dict[str, Category],
    mapped_category_ids: frozenset[str],
    other_names: Iterable[str] = (),
) -> list[Fix]:
    taken = {a.name for a, _ in assignments} | set(other_names)
    mapped = [categories[c] for c in sorted(mapped_category_ids) if c in categories]
    fixes: list[Fix] = []
    for assignment, findings in assignments:
        codes = [f.code for f in findings]
        if any(code in SWITCH_OFF_CODES for code in codes):
            fixes.append(Fix(assignment.source_id, assignment.name, next(c for c in codes if c in SWITCH_OFF_CODES),
                             AssignmentChanges(sync=False)))
            continue
        name = points = category = None
        cleared = []
        if "name-over-destination-limit" in codes or "name-over-district-limit" in codes:
            taken.discard(assignment.name)
            name = shorten_name(assignment.name, limit, taken)
            taken.add(name)
            cleared.append("name-over-destination-limit" if "name-over-destination-limit" in codes
                           else "name-over-district-limit")
        if "points-possible-none" in codes:
            points = 0.0
            cleared.append("points-possible-none")
        if "not-in-imported-group" in codes or "grading-category-missing" in codes:
            code = "not-in-imported-group" if "not-in-imported-group" in codes else "grading-category-missing"
            target = mapped_category_for(categories.get(assignment.category_id or ""), mapped)
            if target is None:  # no one right category: the seed's other fix, disable the sync
                fixes.append(Fix(assignment.source_id, assignment.name, code, AssignmentChanges(sync=False)))
                continue
            category = target.source_id
            cleared.append(code)
        if cleared:
            fixes.append(Fix(assignment.source_id, assignment.name, ", ".join(cleared),
                             AssignmentChanges(name=name, points_possible=points, category_id=category)))
    return fixes
