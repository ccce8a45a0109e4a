"""Carrying out a gradebook plan: writes in parallel under a cap, each outcome recorded, nothing doubled.

Exactly-once rests on three habits:

* an assignment create is announced in the identity map (state ``pending``) before it is
  sent, so a create whose answer was lost (or a crash) is found again by looking the
  assignment up (server-assigned ids) or repeated (client-assigned ids), never made twice;
* scores are upserts keyed by (assignment section, student): repeating one is harmless;
* identity rows, run items and audit entries of an assignment are recorded as one unit,
  after the destination confirmed the writes they describe.

What to do after a failed write is decided by the error's class (gone, already there,
refused, outcome unknown), never by its catalogue code, which only picks the message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from passback.connectors.base import Destination
from passback.errors import AlreadyExists, DestinationError, OutcomeUnknown, TargetGone
from passback.model import SourceProblem
from passback.model.values import CreatedAssignment, DestinationContext, IdAssignment, ScoreRejection, ScoreWrite
from passback.pipeline.plan import (
    ASSIGNMENT,
    DELETE,
    ERROR,
    OUTCOME_OF,
    RELEASE,
    SCORE,
    SKIP,
    UNCHANGED,
    UPDATE,
    AssignmentStep,
    Plan,
    ScoreStep,
)
from passback.pipeline.record import Recorder
from passback.pipeline.record import Unit as _AssignmentOutcome
from passback.pipeline.run import Progress
from passback.rules.catalogue import entry
from passback.rules.findings import Finding
from passback.store.history import AuditEntry, ItemOutcome
from passback.store.identity import PENDING, SYNCED, IdentityRow, Release, load_identities

log = structlog.get_logger("passback.execute")


def _item(kind: str, key: str, outcome: str, *, dest_id: str | None = None,
          finding: Finding | None = None, code: str | None = None, message: str | None = None,
          context: dict[str, Any] | None = None) -> ItemOutcome:
    ctx = dict(context or {})
    if finding is not None:
        code = finding.code
        spoken_by = {"source_kind": ctx["source_kind"]} if "source_kind" in ctx else {}
        message = entry(code).render(**{**finding.context, **spoken_by})
        ctx.update({k: v for k, v in finding.context.items() if v is not None})
    return ItemOutcome(object_kind=kind, source_id=key, outcome=outcome, dest_id=dest_id,
                       code=code, message=message, context=ctx)


SOURCE_ROW = "source_row"


def problem_item(problem: SourceProblem, course_id: str) -> ItemOutcome:
    """A row the source could not read, as a run item: an error naming file and line, with the row's fix.

    Keyed ``course:assignment[:student]`` when the row says which, so the course's history
    finds it under that assignment and student; else ``course:FILE line N``.
    """
    parts = [course_id, problem.assignment_id or f"{problem.file} line {problem.line}"]
    if problem.student_id:
        parts.append(problem.student_id)
    finding = Finding("source-row-unreadable", {"file": problem.file, "line": problem.line,
                                                "problem": problem.problem, "fix": problem.fix})
    context = {"course_id": course_id, "assignment_id": problem.assignment_id, "student_id": problem.student_id}
    return _item(SOURCE_ROW, ":".join(parts), "error", finding=finding,
                 context={k: v for k, v in context.items() if v is not None})


class Executor:
    """Carries out a gradebook plan against a destination, reading only its capabilities."""

    def __init__(self, destination: Destination, context: DestinationContext, recorder: Recorder,
                 concurrency: int, progress: Progress | None = None, source_kind: str | None = None) -> None:
        self.source_kind = source_kind  # whose words the messages speak (Canvas's or Schoology's)
        self.destination = destination
        self.context = context
        self.capabilities = destination.capabilities
        self.recorder = recorder
        self.concurrency = concurrency
        self.progress = progress

    async def run(self, plan: Plan) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        done = 0
        total = len(plan.steps)

        async def one(step: AssignmentStep) -> None:
            nonlocal done
            async with gate:
                outcome = await self._assignment(plan, step)
            await asyncio.to_thread(self.recorder.add, outcome)
            done += 1
            if self.progress:
                self.progress(done, total)

        await asyncio.gather(*(one(step) for step in plan.steps))

    # --- one assignment ---------------------------------------------------------------
    async def _assignment(self, plan: Plan, step: AssignmentStep) -> _AssignmentOutcome:
        out = _AssignmentOutcome()
        context = {"course_id": plan.course_id, "assignment_id": step.assignment_id,
                   "assignment_name": step.name, "course_url": plan.course_url}
        if self.source_kind:
            context["source_kind"] = self.source_kind
        if step.action in (SKIP, ERROR):
            out.items.append(_item(ASSIGNMENT, step.key, OUTCOME_OF[step.action], finding=step.findings[0],
                                   context=context | {"findings": [f.code for f in step.findings]}))
            return out
        if step.action == DELETE:
            return await self._delete(step, context, out)
        if step.action == RELEASE:
            finding = step.findings[0] if step.findings else Finding("destination-assignment-missing", {
                **context, "dest_assignment_id": step.identity.dest_id if step.identity else None})
            out.items.append(_item(ASSIGNMENT, step.key, "skipped", finding=finding, context=context))
            out.released.append(_release_of(step))
            out.released.extend(self._score_releases(step.key))
            return out
        assert step.payload is not None
        try:
            created, outcome = await self._ensure(step)
        except LinkTaken:
            out.items.append(_item(ASSIGNMENT, step.key, "skipped", finding=Finding(
                "assignment-linked-by-another-run", context), context=context))
            return out
        except DestinationError as exc:
            return self._assignment_failed(step, exc, context, out)
        out.items.append(_item(ASSIGNMENT, step.key, outcome, dest_id=created.dest_id, context=context))
        if outcome == "unchanged" and step.identity is not None and step.identity.state == SYNCED:
            await self._scores(step, created, context, out)  # its row is as stored: written again it is a dead row
            return out
        out.identities.append(IdentityRow(
            ASSIGNMENT, step.key, created.dest_id, step.value_hash,
            step.payload.as_value() | {"section_assignment_ids": created.section_assignment_ids}, SYNCED,
            natural_key={"name": step.payload.name, "due_date": step.payload.due_date.isoformat()},
        ))
        await self._scores(step, created, context, out)
        return out

    def _assignment_failed(self, step: AssignmentStep, exc: DestinationError,
                           context: dict[str, Any], out: _AssignmentOutcome) -> _AssignmentOutcome:
        finding = Finding(exc.code, {**context, "detail": exc.detail,
                                     "due_date": step.payload.due_date.isoformat() if step.payload else None,
                                     "dest_assignment_id": step.identity.dest_id if step.identity else None})
        out.items.append(_item(ASSIGNMENT, step.key, "error", finding=finding, context=context))
        # What a failure may change: the link this run read (when the destination says its
        # target is gone) or the pending row this run announced itself (when the create was
        # refused), and nothing else; each release holds only if the row is still as seen.
        unknown = isinstance(exc, OutcomeUnknown)
        announced = step.action == "create" and not unknown
        if isinstance(exc, TargetGone) or announced:
            out.released.append(_release_of(step) if isinstance(exc, TargetGone) else
                                Release(ASSIGNMENT, step.key, None))
            out.released.extend(Release(SCORE, s.key, s.previous_dest_id) for s in step.scores
                                if s.previous is not None)
        log.info("assignment_failed", run_id=self.recorder.run_id, code=exc.code, assignment=step.assignment_id)
        return out

    async def _ensure(self, step: AssignmentStep) -> tuple[CreatedAssignment, str]:
        payload = step.payload
        assert payload is not None
        identity = step.identity
        if step.action == UNCHANGED and identity is not None:
            return _created_from(identity), "unchanged"
        if step.action == UPDATE and identity is not None:
            return await self.destination.update_assignment(self.context, _created_from(identity), payload), "updated"
        found_again = self.capabilities.ids is IdAssignment.SERVER_ASSIGNED
        if identity is not None and identity.state == PENDING and found_again:
            found = await self.destination.find_assignment(self.context, payload)
            if found is not None:
                return found, "created"
        announced = await asyncio.to_thread(self.recorder.announce,
                                            IdentityRow(ASSIGNMENT, step.key, None, None, None, PENDING), identity)
        if not announced:
            raise LinkTaken(step.key)
        for _attempt in range(3):
            try:
                return await self.destination.create_assignment(self.context, payload), "created"
            except OutcomeUnknown:
                if not found_again:
                    continue  # a client-assigned id: repeating the create is harmless
                found = await self.destination.find_assignment(self.context, payload)
                if found is not None:
                    return found, "created"
            except AlreadyExists:
                if found_again and identity is not None and identity.state == PENDING:
                    found = await self.destination.find_assignment(self.context, payload)
                    if found is not None:
                        return found, "created"
                raise
        raise OutcomeUnknown("the assignment create was not confirmed after 3 attempts")

    async def _delete(self, step: AssignmentStep, context: dict[str, Any],
                      out: _AssignmentOutcome) -> _AssignmentOutcome:
        assert step.identity is not None and step.identity.dest_id is not None
        try:
            await self.destination.delete_assignment(self.context, _created_from(step.identity))
        except DestinationError as exc:
            out.items.append(_item(ASSIGNMENT, step.key, "error", code=exc.code, message=str(exc), context=context))
            return out
        out.items.append(_item(ASSIGNMENT, step.key, "deleted", dest_id=step.identity.dest_id, context=context))
        out.released.append(_release_of(step))
        out.released.extend(self._score_releases(step.key))
        return out

    def _score_releases(self, assignment_key: str) -> list[Release]:
        recorder = self.recorder
        rows = load_identities(recorder.store, recorder.pairing, (SCORE,), source_prefix=assignment_key + ":")
        return [Release(kind, key, row.dest_id) for (kind, key), row in rows.items()]

    async def _scores(self, step: AssignmentStep, created: CreatedAssignment,
                      context: dict[str, Any], out: _AssignmentOutcome) -> None:
        pending: dict[str, list[ScoreStep]] = {}
        for score in step.scores:
            if score.action in (SKIP, ERROR):
                item_context = context | {"student_id": score.student_id, "section_id": score.section_id}
                out.items.append(_item(SCORE, score.key, OUTCOME_OF[score.action], finding=score.finding,
                                       context=item_context))
            elif score.action == UNCHANGED:
                out.items.append(ItemOutcome(SCORE, score.key, "unchanged"))
            else:
                pending.setdefault(score.dest_section_id or "", []).append(score)
        sent = await asyncio.gather(*(self._send(dest_section, created.section_assignment_ids.get(dest_section), scores)
                                      for dest_section, scores in pending.items()))  # the sections side by side
        for (dest_section, scores), answer in zip(pending.items(), sent, strict=True):
            asid = created.section_assignment_ids.get(dest_section)
            if asid is None:
                for score in scores:
                    out.items.append(_item(SCORE, score.key, "error", code="student-not-in-destination-section",
                                           message=entry("student-not-in-destination-section").render(
                                               dest_student_id=score.dest_student_id,
                                               dest_assignment_section_id="(none)"),
                                           context=context | {"student_id": score.student_id}))
                continue
            if isinstance(answer, TargetGone):
                rejections_by = {s.dest_student_id: (answer.code, answer.detail) for s in scores}
                out.identities = [i for i in out.identities if i.source_id != step.key]
                out.released.append(Release(ASSIGNMENT, step.key, created.dest_id))
                out.released.extend(Release(SCORE, s.key, s.previous_dest_id) for s in step.scores
                                    if s.previous is not None)
            elif isinstance(answer, OutcomeUnknown):
                rejections_by = {s.dest_student_id: (answer.code, str(answer)) for s in scores}
            else:
                rejections_by = {r.student_dest_id: (r.code, r.detail) for r in answer}
            for score in scores:
                dest_key = f"{asid}:{score.dest_student_id}"
                if score.dest_student_id in rejections_by:
                    item_context = context | {"student_id": score.student_id, "section_id": score.section_id,
                                              "dest_assignment_section_id": asid}
                    code, detail = rejections_by[score.dest_student_id]
                    finding = Finding(code, item_context | {"dest_student_id": score.dest_student_id,
                                                            "detail": detail,
                                                            "dest_assignment_id": created.dest_id})
                    out.items.append(_item(SCORE, score.key, "error", dest_id=dest_key, finding=finding,
                                           context=item_context))
                    continue
                assert score.payload is not None
                outcome = OUTCOME_OF[score.action]
                out.items.append(ItemOutcome(SCORE, score.key, outcome, dest_id=dest_key))
                if score.action == DELETE:
                    out.released.append(Release(SCORE, score.key, score.previous_dest_id))
                else:
                    out.identities.append(IdentityRow(SCORE, score.key, dest_key, None,
                                                      score.payload.as_value(), SYNCED))
                out.audit.append(AuditEntry(
                    action=outcome, source_assignment_id=step.assignment_id, source_student_id=score.student_id,
                    dest_assignment_id=asid, dest_student_id=score.dest_student_id,
                    old_value=score.previous, new_value=None if score.action == DELETE else score.payload.as_value(),
                ))


    async def _send(self, dest_section: str, asid: str | None,
                    scores: list[ScoreStep]) -> list[ScoreRejection] | TargetGone | OutcomeUnknown:
        """One section's score writes; what the destination answered (the refusals), or the error that says
        the section assignment is gone or the outcome is unknown."""
        if asid is None:
            return []
        writes = [ScoreWrite(s.dest_student_id or "", s.payload) for s in scores if s.payload is not None]
        try:
            return await self.destination.write_scores(self.context, dest_section, asid, writes)
        except (TargetGone, OutcomeUnknown) as exc:
            return exc


class LinkTaken(Exception):
    """Another run changed this assignment's identity row after this run planned it."""


def _release_of(step: AssignmentStep) -> Release:
    """The step's assignment link, as this run read it."""
    return Release(ASSIGNMENT, step.key, step.identity.dest_id if step.identity else None)


def _created_from(identity: IdentityRow) -> CreatedAssignment:
    assert identity.dest_id is not None
    return CreatedAssignment(identity.dest_id, dict((identity.value or {}).get("section_assignment_ids", {})))
