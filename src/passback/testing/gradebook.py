"""The contract every gradebook destination passes, against its emulator over real HTTP.

A connector's test module gets the whole suite in one line,
``class TestMine(DestinationContract): pass``, beside three fixtures: ``destination``
(an opened Destination), ``setup`` (the section ids to load, a valid and an inactive
category per section, the destination ids of one student enrolled and one not enrolled
in the first section) and ``backdoor`` (a :class:`Backdoor` into its emulator).

Every write is checked on the emulator's raw state and on the log of writes it accepted,
both read through the backdoor, never through the connector under test: a connector that
wrote the wrong thing and read it back the same wrong way, or that sent a write twice to
a server that merged the two, does not pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Protocol

import pytest

from passback.connectors.base import Destination
from passback.errors import DestinationError, OutcomeUnknown, TargetGone
from passback.model.values import AssignmentPayload, CreatedAssignment, ScorePayload, ScoreWrite


class Backdoor(Protocol):
    """What the edge cases need of a destination's emulator, beside its API."""

    def lose_answers(self, method: str) -> None:
        """Carry out every request of this method but cut the connection before the answer."""

    def answer_again(self) -> None:
        """Stop losing answers."""

    def delete_assignment(self, dest_id: str) -> None:
        """Delete an assignment the way a person would in the destination's own UI."""

    def assignments_named(self, name: str) -> int:
        """How many assignments of this name the emulator holds (its raw state)."""

    def held_assignment(self, dest_id: str) -> HeldAssignment | None:
        """The assignment as the emulator holds it (its raw state), or None."""

    def held_scores(self) -> dict[tuple[str, str], ScorePayload]:
        """Every score the emulator holds, by (section assignment id, student id), from its raw state."""

    def accepted_creates(self, name: str) -> int:
        """How many assignment creates of this name the emulator accepted (its write log)."""

    def accepted_score_writes(self, section_assignment_id: str, student_id: str) -> int:
        """How many accepted score writes named this student on this section assignment (its write log)."""


@dataclass(frozen=True)
class HeldAssignment:
    """What a destination holds of an assignment, in the contract's terms."""

    name: str
    due_date: str  # ISO date
    points_possible: float
    section_assignment_ids: dict[str, str]  # destination section -> its section assignment
    category_ids: dict[str, str]  # destination section -> category


def payload_for(setup: dict[str, Any], name: str = "Lab 1", **changes: Any) -> AssignmentPayload:
    base = AssignmentPayload(
        section_ids=tuple(setup["section_ids"]), name=name, description="Measure twice.",
        due_date=date(2026, 9, 15), points_possible=20.0, extra_credit_points=0.0,
        category_ids=dict(setup["categories"]),
    )
    return replace(base, **changes)


def assert_held_as_sent(backdoor: Backdoor, created: CreatedAssignment, payload: AssignmentPayload) -> None:
    """The emulator holds the assignment as the payload describes it, where the connector said."""
    held = backdoor.held_assignment(created.dest_id)
    assert held is not None, f"the destination holds no assignment {created.dest_id}"
    assert (held.name, held.due_date, held.points_possible) == (
        payload.name, payload.due_date.isoformat(), payload.points_possible)
    assert held.section_assignment_ids == dict(created.section_assignment_ids)
    assert set(held.section_assignment_ids) == set(payload.section_ids)
    assert held.category_ids == dict(payload.category_ids)


class DestinationContract:
    @pytest.mark.anyio
    async def test_context_has_sections_rosters_and_categories(self, destination: Destination, setup: dict[str, Any]) -> None:
        context = await destination.load_context(setup["section_ids"] + ["424242"])
        assert sorted(context.sections) == sorted(setup["section_ids"])  # unknown section ignored
        first = context.sections[setup["section_ids"][0]]
        assert setup["enrolled_student"] in first.student_ids
        assert setup["other_student"] not in first.student_ids
        for section, category in setup["categories"].items():
            assert category in {c.dest_id for c in context.categories[section] if c.active}

    @pytest.mark.anyio
    async def test_create_find_update_delete(self, destination: Destination, setup: dict[str, Any],
                                             backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        payload = payload_for(setup)
        created = await destination.create_assignment(ctx, payload)
        assert set(created.section_assignment_ids) == set(setup["section_ids"])
        assert_held_as_sent(backdoor, created, payload)
        assert backdoor.accepted_creates(payload.name) == 1
        assert await destination.find_assignment(ctx, payload) == created
        changed = replace(payload, name="Lab 1 (revised)", points_possible=25.0)
        updated = await destination.update_assignment(ctx, created, changed)
        assert updated.section_assignment_ids == created.section_assignment_ids
        assert_held_as_sent(backdoor, updated, changed)  # changed in place: same ids, new values
        assert backdoor.assignments_named(payload.name) == 0
        assert await destination.find_assignment(ctx, payload) is None
        assert await destination.find_assignment(ctx, changed) == created
        await destination.delete_assignment(ctx, created)
        assert backdoor.held_assignment(created.dest_id) is None
        assert await destination.find_assignment(ctx, changed) is None
        assert backdoor.accepted_creates(changed.name) == 0  # renamed by an update, never created again

    @pytest.mark.anyio
    async def test_scores_are_upserts_and_blanks_clear(self, destination: Destination, setup: dict[str, Any],
                                                       backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        created = await destination.create_assignment(ctx, payload_for(setup, "Lab 2"))
        section = setup["section_ids"][0]
        asid = created.section_assignment_ids[section]
        student = setup["enrolled_student"]
        late = ScorePayload(points=18.5, late=True)
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, late)]) == []
        # held as the destination can hold it: one with no late flag (OneRoster 1.1) keeps the points alone
        assert backdoor.held_scores() == {(asid, student): late.held_by(destination.capabilities.score_fields)}
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=19.0))]) == []
        assert backdoor.held_scores() == {(asid, student): ScorePayload(points=19.0)}  # replaced, not added
        assert backdoor.accepted_score_writes(asid, student) == 2  # one write each, no more
        assert (await destination.read_scores(ctx, setup["section_ids"])) == backdoor.held_scores()
        exempt = ScorePayload(points=None, exempt=True)
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, exempt)]) == []
        assert backdoor.held_scores() == {(asid, student): exempt}
        assert (await destination.read_scores(ctx, setup["section_ids"]))[(asid, student)] == exempt
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=None))]) == []
        assert backdoor.held_scores() == {}  # a blank clears
        assert (asid, student) not in await destination.read_scores(ctx, setup["section_ids"])
        assert backdoor.accepted_score_writes(asid, student) == 4

    @pytest.mark.anyio
    async def test_one_refused_student_does_not_stop_the_others(self, destination: Destination, setup: dict[str, Any],
                                                                backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        created = await destination.create_assignment(ctx, payload_for(setup, "Lab 3"))
        section = setup["section_ids"][0]
        asid = created.section_assignment_ids[section]
        writes = [ScoreWrite(setup["enrolled_student"], ScorePayload(points=10.0)),
                  ScoreWrite(setup["other_student"], ScorePayload(points=11.0))]
        rejected = await destination.write_scores(ctx, section, asid, writes)
        assert [(r.student_dest_id, r.code) for r in rejected] == [
            (setup["other_student"], "student-not-in-destination-section")]
        assert "AssignmentStudentAssociation" in rejected[0].detail
        assert backdoor.held_scores() == {(asid, setup["enrolled_student"]): ScorePayload(points=10.0)}
        assert backdoor.accepted_score_writes(asid, setup["enrolled_student"]) == 1
        assert backdoor.accepted_score_writes(asid, setup["other_student"]) == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize(("changes", "code"), [
        ({"name": "N" * 51}, "name-over-destination-limit"),
        ({"category_ids": "inactive"}, "category-not-valid-for-section"),
    ])
    async def test_refusals_come_back_as_catalogue_codes(self, destination: Destination, setup: dict[str, Any],
                                                         changes: dict[str, Any], code: str, backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        if changes.get("category_ids") == "inactive":
            changes = {"category_ids": dict(setup["inactive_categories"])}
        payload = payload_for(setup, **changes)
        with pytest.raises(DestinationError) as refused:
            await destination.create_assignment(ctx, payload)
        assert refused.value.code == code
        assert backdoor.assignments_named(payload.name) == 0 and backdoor.accepted_creates(payload.name) == 0

    @pytest.mark.anyio
    async def test_same_name_and_due_date_is_refused(self, destination: Destination, setup: dict[str, Any],
                                                     backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        await destination.create_assignment(ctx, payload_for(setup, "Lab 4"))
        with pytest.raises(DestinationError) as refused:
            await destination.create_assignment(ctx, payload_for(setup, "Lab 4"))
        assert refused.value.code == "duplicate-destination-assignment"
        assert "An assignment already exists with this name Lab 4 and due date 2026-09-15" in refused.value.detail
        assert backdoor.accepted_creates("Lab 4") == 1 and backdoor.assignments_named("Lab 4") == 1

    # --- named edge cases --------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_edge_lost_create_answer_is_unknown_and_found_again(
            self, destination: Destination, setup: dict[str, Any], backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        payload = payload_for(setup, "Lab 9")
        backdoor.lose_answers("POST")
        try:
            with pytest.raises(OutcomeUnknown):
                await destination.create_assignment(ctx, payload)
        finally:
            backdoor.answer_again()
        assert backdoor.assignments_named("Lab 9") == 1  # it was made: only the answer was lost
        assert backdoor.accepted_creates("Lab 9") == 1  # and sent once: the connector did not repeat it
        found = await destination.find_assignment(ctx, payload)
        assert found is not None
        assert_held_as_sent(backdoor, found, payload)
        assert backdoor.accepted_creates("Lab 9") == 1

    @pytest.mark.anyio
    async def test_edge_assignment_deleted_in_the_destination_is_gone(
            self, destination: Destination, setup: dict[str, Any], backdoor: Backdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        payload = payload_for(setup, "Lab 10")
        created = await destination.create_assignment(ctx, payload)
        section = setup["section_ids"][0]
        asid = created.section_assignment_ids[section]
        writes = [ScoreWrite(setup["enrolled_student"], ScorePayload(points=10.0))]
        assert await destination.write_scores(ctx, section, asid, writes) == []
        backdoor.delete_assignment(created.dest_id)
        assert backdoor.held_assignment(created.dest_id) is None and backdoor.held_scores() == {}
        with pytest.raises(TargetGone):
            await destination.update_assignment(ctx, created, replace(payload, points_possible=30.0))
        with pytest.raises(TargetGone):
            await destination.write_scores(ctx, section, asid, writes)
        await destination.delete_assignment(ctx, created)  # deleting what is gone is not an error
        assert backdoor.held_assignment(created.dest_id) is None and backdoor.held_scores() == {}
        assert backdoor.accepted_creates("Lab 10") == 1  # nothing was made again behind the caller's back
        assert backdoor.accepted_score_writes(asid, setup["enrolled_student"]) == 1
