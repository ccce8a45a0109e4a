"""Sending planned Ed-Fi writes: deletes first, POSTs streamed through libcurl, answers recorded as they come.

A run hands over a first plan, for the posted grades that have records in the ODS, and
then the rest chunk by chunk, so the first records are on the wire while the later ones
are still being parsed and planned. The first plan's deletes (and the delete half of a
natural-key change) go first on the careful path and are awaited; the later chunks only
POST, so no POST overtakes a DELETE. Answers are settled and written to the store in
batches while the send goes on: identity rows, run items and removed rows together, so
a write the ODS acknowledged is recorded even if the run stops later.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from passback.connectors.base import RecordAnswer, RecordsDestination, json_body
from passback.connectors.edfi.curl_sender import Posted
from passback.connectors.edfi.errors import REFUSALS, refusal_code
from passback.convert.edfi import natural_key
from passback.rules.catalogue import entry
from passback.pipeline.record import Recorder
from passback.pipeline.run import Progress
from passback.store.history import ItemOutcome
from passback.store.identity import SYNCED, IdentityRow, Release

GRADE = "edfi-grade"
RESOURCE = "grades"
BATCH = 2000


@dataclass(frozen=True)
class Write:
    """One Ed-Fi write: a POST of ``record`` or a DELETE of ``old_id``, for one identity row."""

    posted_id: str
    identity_key: str
    action: str  # "post", "delete", "replace" (delete old_id, then post)
    record: dict[str, Any] | None = None
    body: bytes | None = None
    old_id: str | None = None
    value_hash: str | None = None


@dataclass
class GradePlan:
    writes: list[Write] = field(default_factory=list)
    items: list[ItemOutcome] = field(default_factory=list)
    done_posted: dict[str, str | None] = field(default_factory=dict)  # posted id -> new source hash (None: forget)
    waiting: set[str] = field(default_factory=set)  # posted ids whose events stay pending (an error, a deferred delete)
    unchanged: int = 0

    def hold(self, posted_id: str, digest: str | None) -> None:
        """Seen as it is, but not done: the posted grade's events stay pending for the next sync."""
        self.done_posted[posted_id] = digest
        self.waiting.add(posted_id)

    def merge(self, other: GradePlan) -> None:
        """Keep what a later chunk's plan decided about its posted grades (its writes are sent as they come)."""
        self.done_posted.update(other.done_posted)
        self.waiting |= other.waiting


PROGRESS_EVERY = 250  # answers between two progress reports: a bar, not a cost on the hot path


class GradeSender:
    """Carries out a run's plan and records every answer through the run's recorder; one per run."""

    def __init__(self, ods: RecordsDestination, recorder: Recorder, concurrency: int,
                 progress: Progress | None = None) -> None:
        self.ods = ods
        self.recorder = recorder
        self.concurrency = concurrency
        self.progress = progress  # hears (writes answered, writes planned so far); planning goes on while sending
        self.planned = 0
        self.answered = 0
        self.failed: set[str] = set()
        self.retry: list[Write] = []
        self.in_flight: dict[int, Write] = {}
        self.tags = itertools.count()

    async def send(self, first: GradePlan, later: Iterator[GradePlan]) -> set[str]:
        """Send ``first`` (deletes, then POSTs) and then every plan of ``later``; the posted ids that failed.

        ``later`` is advanced lazily, inside the send: its plans may hold only POSTs (they
        are for posted grades with nothing in the ODS yet), so no DELETE can be overtaken.
        """
        self._take(first)
        removals = [w for w in first.writes if w.action in ("delete", "replace") and w.old_id]
        if removals:
            await self._careful([replace(w, action="delete") if w.action == "replace" else w for w in removals])
        bodies = itertools.chain(self._posts(first), (body for plan in later for body in self._later(plan)))
        try:
            head = next(bodies, None)
            if head is not None:
                await self.ods.stream_upserts(RESOURCE, itertools.chain([head], bodies), self._answer)
            retry, self.retry = self.retry, []
            await self._careful(retry)
        finally:
            self.recorder.flush()  # every acknowledged write is kept, even when the run stops here
        self._tell()
        return self.failed

    def _take(self, plan: GradePlan) -> None:
        for item in plan.items:
            self.recorder.add_one(item)
        self.planned += len(plan.writes)
        self._tell()

    def _tell(self, every: int = 1) -> None:
        if self.progress is not None and self.answered % every == 0:
            self.progress(self.answered, max(self.planned, self.answered))

    def _later(self, plan: GradePlan) -> Iterator[tuple[int, bytes]]:
        self._take(plan)
        if any(w.action != "post" for w in plan.writes):
            raise ValueError("a lazily planned chunk may only POST")
        return self._posts(plan)

    def _posts(self, plan: GradePlan) -> Iterator[tuple[int, bytes]]:
        """The plan's POSTs (a natural-key change's second half too), tagged, once their posted grade has not failed."""
        for write in plan.writes:
            if write.action == "delete" or write.posted_id in self.failed:
                continue
            if write.action == "replace":
                write = replace(write, action="post")
            tag = next(self.tags)
            self.in_flight[tag] = write
            yield tag, write.body  # type: ignore[misc]

    def _answer(self, answer: Posted) -> None:
        """One answer of the stream (called on the sender's thread, which alone touches this state then)."""
        write = self.in_flight.pop(answer.tag)
        if answer.status in (200, 201):
            location = answer.location or ""
            self._settle(write, ("created" if answer.status == 201 else "updated",
                                 location[location.rfind("/") + 1:] or None))
        elif answer.status in REFUSALS:
            self._settle(write, refused_post(write, RecordAnswer(answer.status, None, json_body(answer.body))))
        else:  # no answer, throttled, a passing server error, or an expired token
            self.retry.append(write)

    def _settle(self, write: Write, outcome: tuple[str, str | None] | ItemOutcome) -> None:
        self.answered += 1
        self._tell(every=PROGRESS_EVERY)
        self._record(write, outcome)

    def _record(self, write: Write, outcome: tuple[str, str | None] | ItemOutcome) -> None:
        if isinstance(outcome, ItemOutcome):
            self.failed.add(write.posted_id)
            self.recorder.add_one(outcome)
            return
        verb, record_id = outcome
        item = ItemOutcome(GRADE, write.identity_key, verb, dest_id=record_id)
        if write.action == "delete":
            self.recorder.add_one(item, released=Release(GRADE, write.identity_key, write.old_id))
        else:
            assert write.record is not None
            self.recorder.add_one(item, IdentityRow(GRADE, write.identity_key, record_id, write.value_hash, None,
                                                    SYNCED, natural_key=list(natural_key(write.record))))

    async def _careful(self, writes: list[Write]) -> None:
        """One write at a time per connection, each with the client's retries: deletes and leftovers."""
        waiting = list(reversed(writes))

        async def worker() -> None:
            while waiting:
                write = waiting.pop()
                self._settle(write, await self._one(write))

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(writes)))))

    async def _one(self, write: Write) -> tuple[str, str | None] | ItemOutcome:
        try:
            if write.action in ("delete", "replace") and write.old_id:
                gone = await self.ods.delete(RESOURCE, write.old_id)
                if gone.status not in (204, 404):
                    return refused(write, gone.detail)
                if write.action == "delete":
                    return "deleted", write.old_id
            assert write.body is not None
            answer = await self.ods.upsert(RESOURCE, write.body)
        except Exception as exc:  # noqa: BLE001 - unreachable or refused: the item says which
            return refused(write, str(exc), "destination-unreachable")
        if not answer.ok:
            return refused_post(write, answer)
        return ("created" if answer.status == 201 else "updated"), answer.record_id


def refused_post(write: Write, answer: RecordAnswer) -> ItemOutcome:
    """A POST the ODS refused: a 409 is a reference it does not hold, anything else a rejection."""
    return refused(write, answer.detail, refusal_code(answer.status))


def refused(write: Write, detail: str, code: str = "destination-rejected") -> ItemOutcome:
    return ItemOutcome(GRADE, write.identity_key, "error", code=code,
                       message=entry(code).render(detail=detail), context={"posted_id": write.posted_id})
