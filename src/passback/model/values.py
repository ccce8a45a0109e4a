"""The values that cross the destination boundary, and what a destination can hold.

They belong with the model, not with the connectors: the rules check an assignment
against a destination's :class:`Capabilities`, the conversion builds
:class:`ScorePayload` values, and the planner builds :class:`AssignmentPayload` values,
all without knowing which system will receive them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from passback.model import DestinationCategory, DestinationSection


class Placement(StrEnum):
    """Where one source assignment lands in the destination."""

    SPANS_SECTIONS = "spans_sections"  # one assignment given to several sections (PowerTeacher Pro)
    PER_CLASS = "per_class"  # one line item per class section (OneRoster)
    PER_COURSE = "per_course"  # one line item for the whole course (LTI AGS)


class CategoryScope(StrEnum):
    PER_SECTION = "per_section"  # each section (teacher) has its own categories
    PER_CLASS = "per_class"
    NONE = "none"  # the destination has no categories: the category rules do not apply


class IdAssignment(StrEnum):
    SERVER_ASSIGNED = "server_assigned"  # found again by natural key after a lost create answer
    CLIENT_ASSIGNED = "client_assigned"  # passback chooses the id: a create is an idempotent PUT


SCORE_FIELDS = frozenset({"points", "late", "missing", "exempt", "status", "comment", "timestamp"})


@dataclass(frozen=True)
class Capabilities:
    """What a gradebook destination can do; the planner and the executor read this, never a kind."""

    placement: Placement  # the planner maps source sections to destination sections by it
    categories: CategoryScope
    ids: IdAssignment
    score_fields: frozenset[str]
    name_max_length: int
    requires_points_possible: bool = True
    score_batch_size: int = 500

    def __post_init__(self) -> None:
        unknown = self.score_fields - SCORE_FIELDS
        if unknown:
            raise ValueError(f"unknown score fields: {sorted(unknown)}")

    @property
    def has_categories(self) -> bool:
        return self.categories is not CategoryScope.NONE


@dataclass(frozen=True)
class RecordCapabilities:
    """What a records destination (Ed-Fi's ODS/API) can do."""

    upsert_by_natural_key: bool = True  # a POST creates or updates the record with that natural key
    ids: IdAssignment = IdAssignment.SERVER_ASSIGNED
    streams: bool = False  # it offers a bulk POST stream beside the one-by-one writes
    batch_size: int = 1


@dataclass(frozen=True)
class AssignmentChanges:
    """What passback may change on a teacher's assignment, when the teacher confirms a fix."""

    name: str | None = None
    points_possible: float | None = None
    category_id: str | None = None
    sync: bool | None = None

    def described(self) -> str:
        parts = []
        if self.name is not None:
            parts.append(f"rename to {self.name!r}")
        if self.points_possible is not None:
            parts.append(f"set points possible to {self.points_possible:g}")
        if self.category_id is not None:
            parts.append(f"move to category {self.category_id}")
        if self.sync is not None:
            parts.append("turn sync " + ("on" if self.sync else "off"))
        return ", ".join(parts)


@dataclass(frozen=True)
class AssignmentPayload:
    """One assignment as the destination stores it, across the sections it is given to."""

    section_ids: tuple[str, ...]
    name: str
    description: str
    due_date: date
    points_possible: float
    extra_credit_points: float
    category_ids: dict[str, str]  # destination section id -> destination category id

    def as_value(self) -> dict[str, Any]:
        return {
            "section_ids": list(self.section_ids),
            "name": self.name,
            "description": self.description,
            "due_date": self.due_date.isoformat(),
            "points_possible": self.points_possible,
            "extra_credit_points": self.extra_credit_points,
            "category_ids": dict(sorted(self.category_ids.items())),
        }


@dataclass(frozen=True)
class ScorePayload:
    """One score as the destination stores it. ``points`` None with no flag is a blank.

    The fields beyond points, late and exempt are held only by destinations that name
    them in their capabilities; :meth:`held_by` drops the others, so a value compared
    with what was written before never differs by a field the destination cannot hold.
    """

    points: float | None
    late: bool = False
    exempt: bool = False
    missing: bool = False
    status: str | None = None
    comment: str | None = None
    timestamp: str | None = None

    def as_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"points": self.points, "late": self.late, "exempt": self.exempt}
        if self.missing:
            value["missing"] = True
        for name in ("status", "comment", "timestamp"):
            if getattr(self, name) is not None:
                value[name] = getattr(self, name)
        return value

    def held_by(self, fields: frozenset[str]) -> ScorePayload:
        if ((not self.late or "late" in fields) and (not self.exempt or "exempt" in fields)
                and (not self.missing or "missing" in fields) and (self.status is None or "status" in fields)
                and (self.comment is None or "comment" in fields) and (self.timestamp is None or "timestamp" in fields)):
            return self  # the usual case: nothing to drop
        return ScorePayload(
            points=self.points,
            late=self.late and "late" in fields,
            exempt=self.exempt and "exempt" in fields,
            missing=self.missing and "missing" in fields,
            status=self.status if "status" in fields else None,
            comment=self.comment if "comment" in fields else None,
            timestamp=self.timestamp if "timestamp" in fields else None,
        )


BLANK = ScorePayload(points=None)


@dataclass(frozen=True)
class CreatedAssignment:
    dest_id: str
    section_assignment_ids: dict[str, str]  # destination section id -> section assignment id


@dataclass(frozen=True)
class ScoreWrite:
    student_dest_id: str
    payload: ScorePayload


@dataclass(frozen=True)
class ScoreRejection:
    student_dest_id: str
    code: str
    detail: str


@dataclass(frozen=True)
class ExistingAssignment:
    """An assignment the destination holds now, whoever made it."""

    dest_id: str
    name: str
    due_date: str
    section_assignment_ids: dict[str, str]  # destination section id -> section assignment id


@dataclass
class DestinationContext:
    """What the planner and the writes need to know of the destination for one course.

    ``assignments`` and ``scores`` are what the gradebook holds now for the course's
    sections; ``holdings_known`` is false for a destination that cannot list them, and
    then the checks that need them (unique names, released links, drift) are not made.
    ``handles`` is the destination's own per-section data its writes need (for
    PowerTeacher Pro, the teacher and term of each section): the destination object keeps
    no state between calls, so the context is handed back in with every write.
    """

    sections: dict[str, DestinationSection]  # by destination section id
    categories: dict[str, list[DestinationCategory]]  # by destination section id
    student_ids: dict[str, str]  # source student SIS id -> destination student id
    assignments: dict[str, ExistingAssignment] = field(default_factory=dict)
    scores: dict[tuple[str, str], ScorePayload] = field(default_factory=dict)
    holdings_known: bool = False
    handles: dict[str, dict[str, Any]] = field(default_factory=dict)
