"""The contract every source connector passes, against its emulator over real HTTP.

A connector's test module subclasses :class:`SourceContract` and provides two fixtures:
``source`` (a connected Source) and ``truth`` (what the emulator holds, read from its
raw state independently of the connector).
"""

from __future__ import annotations

from typing import Any

import pytest

from passback.connectors.base import Source
from passback.errors import SourceError


class SourceContract:
    @pytest.mark.anyio
    async def test_lists_every_course(self, source: Source, truth: dict[str, Any]) -> None:
        assert sorted(await source.list_course_ids()) == sorted(truth["courses"])

    @pytest.mark.anyio
    async def test_reads_a_course_completely(self, source: Source, truth: dict[str, Any]) -> None:
        for course_id, expected in truth["courses"].items():
            snapshot = await source.read_course(course_id)
            assert snapshot.course.source_id == course_id
            assert sorted(s.sis_id for s in snapshot.sections) == sorted(expected["section_sis_ids"])
            assert sorted(s.sis_id for s in snapshot.students) == sorted(expected["student_sis_ids"])
            assert {a.source_id: (a.name, a.points_possible) for a in snapshot.assignments} == expected["assignments"]
            graded = {(s.assignment_id, s.student_id): s.score for s in snapshot.scores if s.graded and not s.excused}
            assert graded == expected["graded_scores"]
            assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.excused} == expected["excused"]
            assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.missing} == expected["missing"]
            imported = {c.source_id: c.destination_ref for c in snapshot.categories if c.imported}
            assert imported == expected["imported_categories"]
            assert snapshot.course.term is not None and snapshot.course.term.start and snapshot.course.term.end

    @pytest.mark.anyio
    async def test_unknown_course_is_a_clear_error(self, source: Source) -> None:
        with pytest.raises(SourceError, match="no such record|not found|does not exist"):
            await source.read_course("999999")
