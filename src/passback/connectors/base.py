"""The two interfaces every connector implements, and the values that cross them.

A source reads a course into the canonical model; a destination lists and writes
categories, assignments and scores. Everything system-specific (paths, auth, paging,
error bodies) stays behind these two classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from passback.model import CourseSnapshot, DestinationCategory, DestinationSection


class SourceError(RuntimeError):
    """The source could not be read; the message names what and how to fix it."""


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


class Source(ABC):
    kind: str
    has_sync_switch: bool = False  # the source itself holds a per-assignment "sync to SIS" flag

    @abstractmethod
    async def read_course(self, course_id: str) -> CourseSnapshot: ...

    @abstractmethod
    async def list_course_ids(self) -> list[str]: ...

    @abstractmethod
    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        """Create a category marked as imported from the destination; returns its id."""

    @abstractmethod
    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None: ...

    def course_url(self, course_id: str) -> str | None:
        return None

    async def aclose(self) -> None:  # pragma: no cover - default does nothing
        return None


@dataclass(frozen=True)
class DestinationProfile:
    """The destination's own limits, checked before anything is sent."""

    name_max_length: int
    requires_points_possible: bool = True
    score_batch_size: int = 500


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
    """One score as the destination stores it. ``points`` None with no flag is a blank."""

    points: float | None
    late: bool = False
    exempt: bool = False

    def as_value(self) -> dict[str, Any]:
        return {"points": self.points, "late": self.late, "exempt": self.exempt}


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
    """What the planner needs to know of the destination for one course.

    ``assignments`` and ``scores`` are what the gradebook holds now for the course's
    sections; ``holdings_known`` is false for a destination that cannot list them, and
    then the checks that need them (unique names, released links, drift) are not made.
    """

    sections: dict[str, DestinationSection]  # by destination section id
    categories: dict[str, list[DestinationCategory]]  # by destination section id
    student_ids: dict[str, str]  # source student SIS id -> destination student id
    assignments: dict[str, ExistingAssignment] = field(default_factory=dict)
    scores: dict[tuple[str, str], ScorePayload] = field(default_factory=dict)
    holdings_known: bool = False


class DestinationError(RuntimeError):
    """A write the destination refused. ``code`` is a catalogue code."""

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class DestinationUnavailable(RuntimeError):
    """The destination did not confirm a write after every retry; its effect is unknown."""


class Destination(ABC):
    kind: str
    profile: DestinationProfile

    @abstractmethod
    async def load_context(self, section_sis_ids: list[str]) -> DestinationContext: ...

    @abstractmethod
    async def create_assignment(self, payload: AssignmentPayload) -> CreatedAssignment: ...

    @abstractmethod
    async def find_assignment(self, payload: AssignmentPayload) -> CreatedAssignment | None:
        """The destination's assignment matching this payload's name and due date, if any.

        Used to adopt an assignment whose create was sent but never confirmed, so a retry
        never makes a second one.
        """

    @abstractmethod
    async def update_assignment(
        self, created: CreatedAssignment, payload: AssignmentPayload
    ) -> CreatedAssignment: ...

    @abstractmethod
    async def delete_assignment(self, created: CreatedAssignment) -> None: ...

    @abstractmethod
    async def write_scores(
        self, section_id: str, section_assignment_id: str, writes: list[ScoreWrite]
    ) -> list[ScoreRejection]:
        """Write the scores; return the ones refused. Accepted ones are written once."""

    @abstractmethod
    async def read_scores(
        self, section_ids: list[str]
    ) -> dict[tuple[str, str], ScorePayload]:
        """Scores held now, keyed by (section assignment id, destination student id)."""

    async def aclose(self) -> None:  # pragma: no cover
        return None
