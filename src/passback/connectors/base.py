"""The interfaces every connector implements.

A source reads a course into the canonical model; a gradebook destination lists and
writes categories, assignments and scores; a records destination (Ed-Fi) upserts and
deletes records by natural key. Everything system-specific (paths, auth, paging, error
bodies) stays behind these classes. The values that cross them live in
:mod:`passback.model.values`, the errors they raise in :mod:`passback.errors`.

A connector object keeps no state between calls beyond its HTTP client (a pool, a token
and read caches): what a write needs to know of the destination is the
:class:`DestinationContext` that ``load_context`` returned, handed back in, so the
writes of one run may be carried out by another process.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from passback.connectors.incremental import Incremental
from passback.model import CourseSnapshot
from passback.model.posted_rows import PostedExport
from passback.model.values import (
    AssignmentChanges,
    AssignmentPayload,
    Capabilities,
    CreatedAssignment,
    DestinationContext,
    RecordCapabilities,
    ScorePayload,
    ScoreRejection,
    ScoreWrite,
)


class Source(ABC):
    """Where teachers grade: read a course's gradebook, and make the few changes a teacher confirms."""

    kind: str
    has_sync_switch: bool = False  # the source itself holds a per-assignment "sync to SIS" flag
    incremental: Incremental | None = None  # a source that can read only what changed declares its cursor

    async def read_changes(self, course_id: str, since: datetime) -> CourseSnapshot:
        """The course with only the scores changed after ``since`` (by the declared cursor).

        Everything but the scores is read whole (assignments, sections, enrollments), so a
        changed assignment or roster is seen; ``cursor_value`` says how far this read got.
        Only sources that declare ``incremental`` have it.
        """
        raise NotImplementedError(f"{self.kind} reads whole courses only")

    @abstractmethod
    async def read_course(self, course_id: str) -> CourseSnapshot:
        """The whole gradebook of one course, read at one moment.

        Called once per run before planning. Raises :class:`~passback.errors.SourceNotFound`
        for a course the source does not have and :class:`~passback.errors.SourceError` when
        the source cannot be read (with what to fix in the message).
        """

    @abstractmethod
    async def list_course_ids(self) -> list[str]:
        """Every course the connection can see, for ``sync --all``. Raises SourceError."""

    @abstractmethod
    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        """Create a category marked as imported from the destination category ``destination_ref``.

        Called by the category import (seed 000 step 2); returns the new category's id.
        Raises SourceError when the source refuses.
        """

    @abstractmethod
    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        """Apply a fix the teacher confirmed (rename, points, category, sync switch). Raises SourceError."""

    def course_url(self, course_id: str) -> str | None:
        """The course in the source's own UI, for deep links from the run history."""
        return None

    async def aclose(self) -> None:  # pragma: no cover - default does nothing
        """Release the HTTP pool."""
        return None


class PostedGradesSource(ABC):
    """Where posted grades (term and semester finals) are read for state reporting."""

    kind: str

    @abstractmethod
    async def read(self) -> PostedExport:
        """Every posted grade as a row, hashed; unreadable rows are problems, not errors.

        Raises :class:`~passback.errors.SourceError` when the source cannot be read at all.
        """

    def digest(self) -> str | None:
        """One hash of everything, where the source can give it cheaply (a file); else None."""
        return None

    async def aclose(self) -> None:  # pragma: no cover
        return None


class Destination(ABC):
    """A gradebook that holds assignments and scores (PowerTeacher Pro, OneRoster, LTI AGS)."""

    kind: str
    capabilities: Capabilities

    @abstractmethod
    async def load_context(self, section_sis_ids: list[str]) -> DestinationContext:
        """What the destination holds for these sections: rosters, categories, assignments, scores.

        Called once per run before planning; unknown section ids are left out, not an error.
        Raises :class:`~passback.errors.Refused` (bad credentials: ``AuthRefused``) or
        :class:`~passback.errors.OutcomeUnknown` when the destination cannot be read.
        """

    @abstractmethod
    async def create_assignment(self, context: DestinationContext, payload: AssignmentPayload) -> CreatedAssignment:
        """Create the assignment in the payload's sections.

        Raises ``Refused`` (with the catalogue code of the refusal), ``AlreadyExists`` for a
        clash of natural key, and ``OutcomeUnknown`` when the answer was lost: the executor
        then looks the assignment up (server-assigned ids) or repeats the create (client ids).
        """

    @abstractmethod
    async def find_assignment(self, context: DestinationContext,
                              payload: AssignmentPayload) -> CreatedAssignment | None:
        """The destination's assignment matching this payload's natural key, if any.

        Used to adopt an assignment whose create was sent but never confirmed, so a retry
        never makes a second one. Raises ``OutcomeUnknown`` when it cannot look.
        """

    @abstractmethod
    async def update_assignment(self, context: DestinationContext, created: CreatedAssignment,
                                payload: AssignmentPayload) -> CreatedAssignment:
        """Bring an assignment passback wrote (or was linked to) up to the payload.

        Raises ``TargetGone`` when it was deleted in the destination, ``Refused`` otherwise.
        """

    @abstractmethod
    async def delete_assignment(self, context: DestinationContext, created: CreatedAssignment) -> None:
        """Delete an assignment and its scores; one already gone is not an error. Raises ``Refused``."""

    @abstractmethod
    async def write_scores(self, context: DestinationContext, section_id: str, section_assignment_id: str,
                           writes: list[ScoreWrite]) -> list[ScoreRejection]:
        """Upsert the scores (a blank clears one); return the ones refused, each with its code.

        Accepted ones are written once; repeating a write is harmless. Raises ``TargetGone``
        when the assignment is gone and ``OutcomeUnknown`` when the destination cannot be reached.
        """

    @abstractmethod
    async def read_scores(self, context: DestinationContext,
                          section_ids: list[str]) -> dict[tuple[str, str], ScorePayload]:
        """Scores held now, keyed by (section assignment id, destination student id)."""

    async def aclose(self) -> None:  # pragma: no cover
        """Release the HTTP pool."""
        return None


def json_body(payload: bytes) -> dict[str, Any]:
    """An answer's body as a dict; text that is not a JSON object becomes ``{"detail": ...}``."""
    try:
        value = json.loads(payload) if payload else {}
    except ValueError:
        return {"detail": payload[:300].decode(errors="replace")}
    return value if isinstance(value, dict) else {"detail": str(value)[:300]}


@dataclass
class RecordAnswer:
    """The destination's answer to one record write."""

    status: int
    record_id: str | None = None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        text = self.body.get("detail") or self.body.get("message") or ""
        errors = self.body.get("validationErrors") or {}
        if errors:
            text += " " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        return text.strip() or f"HTTP {self.status}"


class RecordsDestination(ABC):
    """A store of records with natural keys (the Ed-Fi ODS/API): upsert, delete by id, list.

    Refusals come back as answers (a status and a body) rather than exceptions, because a
    state-reporting run sends tens of thousands of records and records each refusal as an
    item; only "no answer after every retry" raises ``OutcomeUnknown``.
    """

    kind: str
    capabilities: RecordCapabilities

    @abstractmethod
    async def upsert(self, resource: str, body: bytes) -> RecordAnswer:
        """POST one record: created (201) or updated (200) by its natural key. Raises ``OutcomeUnknown``."""

    @abstractmethod
    async def delete(self, resource: str, record_id: str) -> RecordAnswer:
        """DELETE one record by id; 404 (already gone) is an answer, not an error. Raises ``OutcomeUnknown``."""

    @abstractmethod
    async def list_records(self, resource: str) -> list[dict[str, Any]]:
        """Every record of a resource, all pages. Raises ``Refused`` or ``OutcomeUnknown``."""

    async def stream_upserts(self, resource: str, bodies: Iterable[tuple[int, bytes]],
                             on_answer: Any) -> None:  # pragma: no cover - optional
        """Send many upserts at once where ``capabilities.streams``; answers go to ``on_answer``."""
        raise NotImplementedError

    async def aclose(self) -> None:  # pragma: no cover
        return None
