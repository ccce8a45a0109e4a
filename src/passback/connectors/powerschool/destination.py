"""PowerSchool PowerTeacher Pro as a gradebook destination (D1).

Speaks the contract written down in :mod:`passback.emulators.powerschool`: OAuth 2
client credentials, v1 reads for sections and rosters, and the xte gradebook endpoints
for teacher categories, section assignments and assignment scores. Refusals become typed
errors with catalogue codes (:mod:`.errors`), so the seed's error texts reach the teacher.

One assignment spans the sections it is given to; the server assigns its ids, so a
create whose answer was lost is found again by name and due date. Writes need each
section's teacher and term: ``load_context`` puts them in the context's ``handles``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx

from passback.connectors.base import Destination
from passback.connectors.http import UncertainWrite
from passback.connectors.powerschool.client import PowerSchoolClient
from passback.connectors.powerschool.errors import refused
from passback.errors import DestinationError, OutcomeUnknown, TargetGone
from passback.jsontext import loads
from passback.model import DestinationCategory, DestinationSection
from passback.model.values import (
    AssignmentPayload,
    Capabilities,
    CategoryScope,
    CreatedAssignment,
    DestinationContext,
    ExistingAssignment,
    IdAssignment,
    Placement,
    ScorePayload,
    ScoreRejection,
    ScoreWrite,
)

CAPABILITIES = Capabilities(
    placement=Placement.SPANS_SECTIONS, categories=CategoryScope.PER_SECTION, ids=IdAssignment.SERVER_ASSIGNED,
    score_fields=frozenset({"points", "late", "exempt"}), name_max_length=50, requires_points_possible=True,
    score_batch_size=500,
)
"""One assignment over several sections, teachers' own categories, server ids; a score is points,
late and exempt (the missing flag is never set: seed 000 sends a missing grade as a blank)."""


def score_row(section_assignment_id: str, write: ScoreWrite) -> dict[str, Any]:
    points = write.payload.points
    return {
        "_assignmentsection": {"assignmentsectionid": int(section_assignment_id)},
        "studentsdcid": int(write.student_dest_id),
        "actualscoreentered": None if points is None else f"{points:g}",
        "actualscorekind": None if points is None else "REAL_SCORE",
        "scoretype": "POINTS",
        "scorepoints": points,
        "islate": write.payload.late,
        "ismissing": False,
        "isexempt": write.payload.exempt,
        "isincomplete": False,
        "iscollected": False,
        "isabsent": False,
    }


def section_body(payload: AssignmentPayload, section_id: str) -> dict[str, Any]:
    return {
        "sectionsdcid": int(section_id),
        "name": payload.name,
        "description": payload.description,
        "duedate": payload.due_date.isoformat(),
        "scoretype": "POINTS",
        "scoreentrypoints": payload.points_possible,
        "totalpointvalue": payload.points_possible,
        "extracreditpoints": payload.extra_credit_points,
        "weight": 1,
        "iscountedinfinalgrade": True,
        "isscoringneeded": True,
        "publishoption": "Immediately",
        "_assignmentcategoryassociations": [
            {"teachercategoryid": int(payload.category_ids[section_id]), "isprimary": True}
        ],
    }


class PowerTeacherProDestination(Destination):
    kind = "powerschool"

    def __init__(self, client: PowerSchoolClient, *, score_batch_size: int = 500) -> None:
        self.client = client
        self.capabilities = replace(CAPABILITIES, score_batch_size=score_batch_size)

    @staticmethod
    def _teacher(context: DestinationContext, section_ids: list[str] | tuple[str, ...]) -> str:
        return str(context.handles[section_ids[0]]["staff_id"])

    async def load_context(self, section_sis_ids: list[str]) -> DestinationContext:
        async def one_section(dcid: str) -> tuple[dict[str, Any], list[Any]] | None:
            section, roster = await asyncio.gather(  # side by side: the roster needs only the id
                self.client.get_json(f"/ws/v1/section/{dcid}"),
                self.client.get_pages(f"/ws/v1/section/{dcid}/section_enrollment", "section_enrollments",
                                      "section_enrollment"),
                return_exceptions=True)
            if isinstance(section, DestinationError) and section.status == 404:
                return None
            for answer in (section, roster):
                if isinstance(answer, BaseException):
                    raise answer
            return section["section"], roster  # type: ignore[index,return-value]

        wanted = [s for s in section_sis_ids if s.isdigit()]
        # The holdings need only the section ids too: asked for at once, asked again only if a section is gone.
        early_holdings = asyncio.ensure_future(self._holdings(wanted))
        try:
            found = await asyncio.gather(*(one_section(s) for s in wanted))
            sections: dict[str, DestinationSection] = {}
            handles: dict[str, dict[str, Any]] = {}
            schools, teachers = set(), set()
            for result in found:
                if result is None:
                    continue
                section, roster = result
                key = str(section["id"])
                handles[key] = {"staff_id": section["staff_id"], "term_id": section["term_id"]}
                schools.add(section["school_id"])
                teachers.add((section["staff_id"], section["term_id"] // 100))
                sections[key] = DestinationSection(
                    dest_id=key,
                    name=f"{section.get('expression', '')} {section.get('section_number', '')}".strip(),
                    sis_id=key,
                    student_ids=tuple(str(r["student_id"]) for r in roster if not r.get("dropped")),
                )
            school_students, teacher_categories = await asyncio.gather(
                asyncio.gather(*(self._students_of(school) for school in sorted(schools))),
                asyncio.gather(*(
                    self.client.get_json("/ws/xte/teacher_category", {"users_dcid": t, "year_id": y})
                    for t, y in sorted(teachers)
                )),
            )
            rostered = {student for section in sections.values() for student in section.student_ids}
            known = {str(s["id"]) for rows in school_students for s in rows}
            if not rostered <= known:  # a list kept from an earlier run, older than a new student: read it again
                school_students = await asyncio.gather(*(self._students_of(school, fresh=True)
                                                         for school in sorted(schools)))
            student_ids = {
                str(s["local_id"]): str(s["id"]) for rows in school_students for s in rows
            }
            by_teacher: dict[str, list[dict[str, Any]]] = {}
            for rows in teacher_categories:
                for row in rows:
                    by_teacher.setdefault(str(row["usersdcid"]), []).append(row)
            categories = {
                key: [
                    DestinationCategory(
                        dest_id=str(row.get("teachercategoryid", row.get("id"))),
                        section_id=key,
                        name=row["name"],
                        active=bool(row.get("isactive", True)),
                    )
                    for row in by_teacher.get(str(handles[key]["staff_id"]), [])
                ]
                for key in sections
            }
            if list(sections) == wanted:
                assignments, scores = await early_holdings
            else:
                assignments, scores = await self._holdings(list(sections))
            return DestinationContext(sections=sections, categories=categories, student_ids=student_ids,
                                      assignments=assignments, scores=scores, holdings_known=True, handles=handles)
        finally:  # not used (a section is gone), or a read failed: cancelled, its outcome settled
            early_holdings.cancel()
            await asyncio.gather(early_holdings, return_exceptions=True)

    async def _holdings(self, section_ids: list[str]
                        ) -> tuple[dict[str, ExistingAssignment], dict[tuple[str, str], ScorePayload]]:
        """Every assignment of these sections with its scores: one lookup request."""
        if not section_ids:
            return {}, {}
        response = await self.client.request(
            "POST", "/ws/xte/assignment/lookup", json={"section_ids": [int(s) for s in section_ids]},
            idempotent=True)
        if response.status_code >= 400:
            raise refused(response)
        assignments: dict[str, ExistingAssignment] = {}
        scores: dict[tuple[str, str], ScorePayload] = {}
        payloads: dict[tuple[Any, Any, Any], ScorePayload] = {}  # one object per distinct score: a course holds
        # thousands of scores but few distinct ones, and building a frozen dataclass is most of reading them
        for row in loads(response.content):
            sections = row["_assignmentsections"]
            assignments[str(row["assignmentid"])] = ExistingAssignment(
                dest_id=str(row["assignmentid"]), name=sections[0]["name"], due_date=sections[0]["duedate"],
                section_assignment_ids={str(s["sectionsdcid"]): str(s["assignmentsectionid"]) for s in sections},
            )
            for section in sections:
                asid = str(section["assignmentsectionid"])
                for score in section.get("_assignmentscores", ()):
                    get = score.get
                    held = (get("scorepoints"), get("islate"), get("isexempt"))  # as sent: made bool once, below
                    payload = payloads.get(held)
                    if payload is None:
                        payload = payloads[held] = ScorePayload(points=held[0], late=bool(held[1]),
                                                                exempt=bool(held[2]))
                    scores[asid, str(score["studentsdcid"])] = payload
        return assignments, scores

    async def _students_of(self, school: int, *, fresh: bool = False) -> list[dict[str, Any]]:
        """A school's students, read once per client (every course of a run shares them) and, with the
        process's memory, kept for later runs while the school's count of students is unchanged."""
        return await self.client.cached_pages(f"/ws/v1/school/{school}/student", "students", "student", fresh=fresh)

    async def create_assignment(self, context: DestinationContext, payload: AssignmentPayload) -> CreatedAssignment:
        body = {"_assignmentsections": [section_body(payload, s) for s in payload.section_ids]}
        try:
            response = await self.client.request(
                "POST", "/ws/xte/section/assignment/",
                params={"users_dcid": self._teacher(context, payload.section_ids)}, json=body,
            )
        except UncertainWrite as exc:
            raise OutcomeUnknown(str(exc)) from exc
        if response.status_code != 201:
            raise refused(response)
        assignment_id = response.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        header = response.headers.get("assignmentsectionids")
        if header:
            asids = [str(a) for a in json.loads(header)]
            return CreatedAssignment(assignment_id, dict(zip(payload.section_ids, asids, strict=True)))
        return await self._read_assignment(context, assignment_id, payload.section_ids)

    async def _read_assignment(self, context: DestinationContext, assignment_id: str,
                               section_ids: tuple[str, ...]) -> CreatedAssignment:
        body = await self.client.get_json(
            f"/ws/xte/section/assignment/{assignment_id}", {"users_dcid": self._teacher(context, section_ids)}
        )
        return CreatedAssignment(
            assignment_id,
            {str(s["sectionsdcid"]): str(s["assignmentsectionid"]) for s in body["_assignmentsections"]},
        )

    async def find_assignment(self, context: DestinationContext,
                              payload: AssignmentPayload) -> CreatedAssignment | None:
        rows = await self.client.get_json(
            "/ws/xte/section/assignment/",
            {"users_dcid": self._teacher(context, payload.section_ids), "section_ids": ",".join(payload.section_ids)},
        )
        due = payload.due_date.isoformat()
        for row in rows:
            sections = row["_assignmentsections"]
            if all(s["name"] == payload.name and s["duedate"] == due for s in sections) and {
                str(s["sectionsdcid"]) for s in sections
            } == set(payload.section_ids):
                return CreatedAssignment(
                    str(row["assignmentid"]),
                    {str(s["sectionsdcid"]): str(s["assignmentsectionid"]) for s in sections},
                )
        return None

    async def update_assignment(self, context: DestinationContext, created: CreatedAssignment,
                                payload: AssignmentPayload) -> CreatedAssignment:
        body = {"_assignmentsections": [section_body(payload, s) for s in payload.section_ids]}
        response = await self.client.request(
            "PUT", f"/ws/xte/section/assignment/{created.dest_id}",
            params={"users_dcid": self._teacher(context, payload.section_ids)}, json=body,
        )
        if response.status_code >= 400:
            raise refused(response)
        header = response.headers.get("assignmentsectionids")
        if header:
            asids = [str(a) for a in json.loads(header)]
            return CreatedAssignment(created.dest_id, dict(zip(payload.section_ids, asids, strict=True)))
        return await self._read_assignment(context, created.dest_id, payload.section_ids)

    async def delete_assignment(self, context: DestinationContext, created: CreatedAssignment) -> None:
        teacher = self._teacher(context, tuple(created.section_assignment_ids))
        response = await self.client.request(
            "DELETE", f"/ws/xte/section/assignment/{created.dest_id}", params={"users_dcid": teacher, "force": "true"}
        )
        if response.status_code not in (204, 404):
            raise refused(response)

    async def write_scores(self, context: DestinationContext, section_id: str, section_assignment_id: str,
                           writes: list[ScoreWrite]) -> list[ScoreRejection]:
        section = context.handles[section_id]
        params = {"users_dcid": section["staff_id"], "status": "A", "term_id": section["term_id"]}
        rejected: list[ScoreRejection] = []
        size = self.capabilities.score_batch_size
        for start in range(0, len(writes), size):
            batch = writes[start : start + size]
            while batch:
                body = {"assignment_scores": [score_row(section_assignment_id, w) for w in batch]}
                response = await self.client.request("PUT", "/ws/xte/score", params=params, json=body)
                if response.status_code == 200:
                    break
                refusal = refused(response)
                if isinstance(refusal, TargetGone):
                    raise refusal
                offenders = self._offenders(response)
                if response.status_code != 409 or not offenders:
                    rejected.extend(ScoreRejection(w.student_dest_id, refusal.code, refusal.detail) for w in batch)
                    break
                for write in batch:
                    if write.student_dest_id in offenders:
                        rejected.append(ScoreRejection(
                            write.student_dest_id, "student-not-in-destination-section", offenders[write.student_dest_id]
                        ))
                batch = [w for w in batch if w.student_dest_id not in offenders]
        return rejected

    @staticmethod
    def _offenders(response: httpx.Response) -> dict[str, str]:
        try:
            errors = response.json().get("errors") or []
        except ValueError:
            return {}
        return {
            str(e["params"]["student_dcid"]): str(e.get("field", ""))
            for e in errors
            if isinstance(e.get("params"), dict) and "student_dcid" in e["params"]
        }

    async def read_scores(self, context: DestinationContext,
                          section_ids: list[str]) -> dict[tuple[str, str], ScorePayload]:
        return (await self._holdings(section_ids))[1]

    async def aclose(self) -> None:
        await self.client.aclose()
