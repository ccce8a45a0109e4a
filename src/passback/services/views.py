"""The shapes passback answers in (``--json`` today, the REST API next), defined once.

Each is a pydantic model built from a service's result, so the CLI and the API cannot
drift apart. ``shown`` drops the optional fields a result does not have (a plan is shown
only by a dry run, a failure only by a failed run).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from passback.pipeline.run import RunResult
from passback.services.setup import Readiness
from passback.store.history import OUTCOMES

PLAN_ACTIONS = ("create", "update", "delete", "unchanged", "skip", "error")


class FindingOut(BaseModel):
    code: str
    message: str


class ScoreWriteOut(BaseModel):
    """One grade a dry run would write (``--details``): whose, where, what, and why not when it would not."""

    student_id: str
    action: str
    dest_section_id: str | None = None
    value: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    reason: str | None = None


class PlanStepOut(BaseModel):
    assignment_id: str
    name: str
    action: str
    scores: dict[str, int]
    findings: list[FindingOut]
    details: list[ScoreWriteOut] | None = None


class RunOut(BaseModel):
    run_id: str | None
    status: str
    counts: dict[str, int]
    stats: dict[str, Any]
    failure: str | None = None
    plan: list[PlanStepOut] | None = None

    def shown(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={k for k in ("failure", "plan") if getattr(self, k) is None})


class SyncOut(BaseModel):
    runs: list[RunOut]
    counts: dict[str, int]

    def shown(self) -> dict[str, Any]:
        return {"runs": [r.shown() for r in self.runs], "counts": self.counts}


class StateRunOut(BaseModel):
    run_id: str | None
    status: str
    counts: dict[str, int]
    events: int
    stats: dict[str, Any]
    problems: list[str]
    failure: str | None = None

    def shown(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"failure"} if self.failure is None else set())


class DemoRunOut(BaseModel):
    run_id: str | None
    course_id: str | None
    status: str
    counts: dict[str, int]


class DemoOut(BaseModel):
    counts: dict[str, int]
    runs: list[DemoRunOut]
    requests: dict[str, int]
    seconds: float


class FixOut(BaseModel):
    assignment_id: str
    code: str
    change: str


class ReadinessOut(BaseModel):
    course_id: str
    ready: int
    assignments: list[dict[str, Any]]
    fixes: list[FixOut]
    unmatched: list[dict[str, Any]] = []  # sections, students and categories that match nothing, each with its fix


DID_NOT_RUN = ("failed", "not_started", "interrupted")


def total(results: list[RunResult]) -> dict[str, int]:
    """The outcomes of many runs added up; a run that failed or could not start counts as an error,
    so a summary never reads clean when a course was not synced."""
    counts = {k: sum(r.counts.get(k, 0) for r in results) for k in OUTCOMES}
    counts["error"] += sum(1 for r in results if r.status in DID_NOT_RUN)
    return counts


def score_details(step: Any) -> list[ScoreWriteOut]:
    return [ScoreWriteOut(student_id=x.student_id, action=x.action, dest_section_id=x.dest_section_id,
                          value=x.payload.as_value() if x.payload is not None else None, previous=x.previous,
                          reason=x.finding.message if x.finding else None) for x in step.scores]


def run_view(result: RunResult, details: bool = False) -> RunOut:
    plan = None
    if result.status == "dry_run" and result.plan is not None:
        plan = [PlanStepOut(
            assignment_id=s.assignment_id, name=s.name, action=s.action,
            scores={a: sum(x.action == a for x in s.scores) for a in PLAN_ACTIONS},
            findings=[FindingOut(code=f.code, message=f.message) for f in s.findings],
            details=score_details(s) if details else None)
            for s in result.plan.steps]
    return RunOut(run_id=result.run_id, status=result.status, counts=result.counts, stats=result.stats,
                  failure=result.failure, plan=plan)


def sync_view(results: list[RunResult], details: bool = False) -> SyncOut:
    return SyncOut(runs=[run_view(r, details) for r in results], counts=total(results))


def state_run_view(result: RunResult) -> StateRunOut:
    return StateRunOut(run_id=result.run_id, status=result.status, counts=result.counts, events=result.events,
                       stats=result.stats, problems=result.problems, failure=result.failure)


def demo_view(results: list[RunResult], seconds: float, systems: tuple[str, ...]) -> DemoOut:
    return DemoOut(
        counts=total(results),
        runs=[DemoRunOut(run_id=r.run_id, course_id=r.plan.course_id if r.plan else None, status=r.status,
                         counts=r.counts) for r in results],
        requests={system: sum(r.stats.get("requests", {}).get(system, 0) for r in results) for system in systems},
        seconds=seconds,
    )


def readiness_view(readiness: Readiness) -> ReadinessOut:
    return ReadinessOut(course_id=readiness.course_id, ready=readiness.ready, assignments=readiness.assignments,
                        unmatched=readiness.unmatched,
                        fixes=[FixOut(assignment_id=f.assignment_id, code=f.code, change=f.changes.described())
                               for f in readiness.fixes])


RAN_CLEAN, COULD_NOT_RUN, ITEMS_ERRORED = 0, 1, 2


def exit_code(results: list[RunResult]) -> int:
    """What a scheduler reads: 0 every item sent or unchanged, 1 a run could not run, 2 some items errored."""
    if any(r.status in DID_NOT_RUN for r in results):
        return COULD_NOT_RUN
    if any(r.counts.get("error") for r in results):
        return ITEMS_ERRORED
    return RAN_CLEAN
