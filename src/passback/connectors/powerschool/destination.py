"""PowerSchool PowerTeacher Pro as a destination (D1).

Speaks the contract written down in :mod:`passback.connectors.powerschool.emulator`:
OAuth 2 client credentials, v1 reads for sections and rosters, and the xte gradebook
endpoints for teacher categories, section assignments and assignment scores. Refusals
are translated into catalogue codes here, so the seed's error texts reach the teacher.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from passback.connectors.base import (
    AssignmentPayload,
    CreatedAssignment,
    Destination,
    DestinationContext,
    DestinationError,
    DestinationProfile,
    DestinationUnavailable,
    ExistingAssignment,
    ScorePayload,
    ScoreRejection,
    ScoreWrite,
)
from passback.connectors.http import (
    PASS,
    GaveUp,
    HttpClient,
    RetryableError,
    RetryPolicy,
    UncertainWrite,
    default_limits,
    default_timeout,
)
from passback.connectors.oauth import ClientCredentials, TokenRefused
from passback.model import DestinationCategory, DestinationSection

PAGE_SIZE = 100
REFUSALS = (
    ("Value may not contain more than", "name-over-destination-limit"),
    ("Score entry points is required", "points-possible-none"),
    ("TeacherCategoryID is not active", "category-not-valid-for-section"),
    ("An assignment already exists", "duplicate-destination-assignment"),
    ("does not have an AssignmentStudentAssociation", "student-not-in-destination-section"),
    ("Unable to find com.pearson.powerschool.xte.model.AssignmentSection", "destination-assignment-missing"),
)


def refusal_code(text: str) -> str:
    for needle, code in REFUSALS:
        if needle in text:
            return code
    return "destination-rejected"


def refusal_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    parts = [str(body.get("message", ""))] if isinstance(body, dict) else []
    for error in (body.get("errors") or []) if isinstance(body, dict) else []:
        parts.append(" ".join(str(error.get(k, "")) for k in ("field", "code") if error.get(k)))
    return "; ".join(p for p in parts if p)


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


class PowerSchoolClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        concurrency: int = 8,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = ClientCredentials(f"{self.base_url}/oauth/access_token", client_id, client_secret)
        self.http = HttpClient(
            httpx.AsyncClient(
                base_url=self.base_url,
                auth=self.auth,
                timeout=default_timeout(timeout),
                limits=default_limits(concurrency),
                headers={"Accept": "application/json"},
            ),
            name="powerschool",
            concurrency=concurrency,
            policy=policy,
            classify=self._classify,
        )

    @staticmethod
    def _classify(response: httpx.Response) -> RetryableError | object | None:
        if response.status_code == 500 and "Unable to find" in response.text:
            return PASS  # a real answer about a deleted assignment, not a passing fault
        if response.status_code == 412 and "Resubmit" in response.text:
            return RetryableError("PowerSchool asked to resubmit")
        return None

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, path, **kwargs)
        except GaveUp as exc:
            raise DestinationUnavailable(str(exc)) from exc
        except TokenRefused as exc:
            raise DestinationError(
                "destination-auth",
                f"PowerSchool refused the plugin credentials ({exc}). Check the client id and "
                "secret of the plugin and save the connection again.",
            ) from exc

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        if response.status_code >= 400:
            raise DestinationError(refusal_code(refusal_text(response)), refusal_text(response), response.status_code)
        return response.json()

    async def get_pages(self, path: str, plural: str, singular: str) -> list[Any]:
        rows: list[Any] = []
        page = 1
        while True:
            body = await self.get_json(path, {"page": page, "pagesize": PAGE_SIZE})
            chunk = (body.get(plural) or {}).get(singular) or []
            if isinstance(chunk, dict):
                chunk = [chunk]
            rows.extend(chunk)
            if len(chunk) < PAGE_SIZE:
                return rows
            page += 1

    async def aclose(self) -> None:
        await self.http.aclose()


class PowerTeacherProDestination(Destination):
    kind = "powerschool"

    def __init__(self, client: PowerSchoolClient, *, score_batch_size: int = 500) -> None:
        self.client = client
        self.profile = DestinationProfile(name_max_length=50, score_batch_size=score_batch_size)
        self.sections: dict[str, dict[str, Any]] = {}
        self._school_students: dict[int, asyncio.Task[list[dict[str, Any]]]] = {}

    def _teacher(self, section_ids: list[str] | tuple[str, ...]) -> str:
        return str(self.sections[section_ids[0]]["staff_id"])

    async def load_context(self, section_sis_ids: list[str]) -> DestinationContext:
        async def one_section(dcid: str) -> tuple[dict[str, Any], list[Any]] | None:
            if not dcid.isdigit():
                return None
            try:
                section = (await self.client.get_json(f"/ws/v1/section/{dcid}"))["section"]
            except DestinationError as exc:
                if exc.status == 404:
                    return None
                raise
            roster = await self.client.get_pages(
                f"/ws/v1/section/{dcid}/section_enrollment", "section_enrollments", "section_enrollment"
            )
            return section, roster

        found = await asyncio.gather(*(one_section(s) for s in section_sis_ids))
        sections: dict[str, DestinationSection] = {}
        schools, teachers = set(), set()
        for result in found:
            if result is None:
                continue
            section, roster = result
            key = str(section["id"])
            self.sections[key] = section
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
                for row in by_teacher.get(str(self.sections[key]["staff_id"]), [])
            ]
            for key in sections
        }
        assignments, scores = await self._holdings(list(sections))
        return DestinationContext(sections=sections, categories=categories, student_ids=student_ids,
                                  assignments=assignments, scores=scores, holdings_known=True)

    async def _holdings(self, section_ids: list[str]
                        ) -> tuple[dict[str, ExistingAssignment], dict[tuple[str, str], ScorePayload]]:
        """Every assignment of these sections with its scores: one lookup request."""
        if not section_ids:
            return {}, {}
        response = await self.client.request(
            "POST", "/ws/xte/assignment/lookup", json={"section_ids": [int(s) for s in section_ids]},
            idempotent=True)
        if response.status_code >= 400:
            raise self._refused(response)
        assignments: dict[str, ExistingAssignment] = {}
        scores: dict[tuple[str, str], ScorePayload] = {}
        for row in response.json():
            sections = row["_assignmentsections"]
            assignments[str(row["assignmentid"])] = ExistingAssignment(
                dest_id=str(row["assignmentid"]), name=sections[0]["name"], due_date=sections[0]["duedate"],
                section_assignment_ids={str(s["sectionsdcid"]): str(s["assignmentsectionid"]) for s in sections},
            )
            for section in sections:
                for score in section.get("_assignmentscores", []):
                    scores[(str(section["assignmentsectionid"]), str(score["studentsdcid"]))] = ScorePayload(
                        points=score.get("scorepoints"), late=bool(score.get("islate")),
                        exempt=bool(score.get("isexempt")))
        return assignments, scores

    async def _students_of(self, school: int) -> list[dict[str, Any]]:
        """A school's students, read once per connector: every course of a run shares them."""
        if school not in self._school_students:
            self._school_students[school] = asyncio.ensure_future(self.client.get_pages(
                f"/ws/v1/school/{school}/student", "students", "student"))
        return await asyncio.shield(self._school_students[school])

    def _refused(self, response: httpx.Response) -> DestinationError:
        text = refusal_text(response)
        return DestinationError(refusal_code(text), text, response.status_code)

    async def create_assignment(self, payload: AssignmentPayload) -> CreatedAssignment:
        body = {"_assignmentsections": [section_body(payload, s) for s in payload.section_ids]}
        try:
            response = await self.client.request(
                "POST", "/ws/xte/section/assignment/",
                params={"users_dcid": self._teacher(payload.section_ids)}, json=body,
            )
        except UncertainWrite as exc:
            raise DestinationUnavailable(str(exc)) from exc
        if response.status_code != 201:
            raise self._refused(response)
        assignment_id = response.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        header = response.headers.get("assignmentsectionids")
        if header:
            asids = [str(a) for a in json.loads(header)]
            return CreatedAssignment(assignment_id, dict(zip(payload.section_ids, asids, strict=True)))
        return await self._read_assignment(assignment_id, payload.section_ids)

    async def _read_assignment(self, assignment_id: str, section_ids: tuple[str, ...]) -> CreatedAssignment:
        body = await self.client.get_json(
            f"/ws/xte/section/assignment/{assignment_id}", {"users_dcid": self._teacher(section_ids)}
        )
        return CreatedAssignment(
            assignment_id,
            {str(s["sectionsdcid"]): str(s["assignmentsectionid"]) for s in body["_assignmentsections"]},
        )

    async def find_assignment(self, payload: AssignmentPayload) -> CreatedAssignment | None:
        rows = await self.client.get_json(
            "/ws/xte/section/assignment/",
            {"users_dcid": self._teacher(payload.section_ids), "section_ids": ",".join(payload.section_ids)},
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

    async def update_assignment(self, created: CreatedAssignment, payload: AssignmentPayload) -> CreatedAssignment:
        body = {"_assignmentsections": [section_body(payload, s) for s in payload.section_ids]}
        response = await self.client.request(
            "PUT", f"/ws/xte/section/assignment/{created.dest_id}",
            params={"users_dcid": self._teacher(payload.section_ids)}, json=body,
        )
        if response.status_code == 404:
            raise DestinationError("destination-assignment-missing", refusal_text(response), 404)
        if response.status_code >= 400:
            raise self._refused(response)
        header = response.headers.get("assignmentsectionids")
        if header:
            asids = [str(a) for a in json.loads(header)]
            return CreatedAssignment(created.dest_id, dict(zip(payload.section_ids, asids, strict=True)))
        return await self._read_assignment(created.dest_id, payload.section_ids)

    async def delete_assignment(self, created: CreatedAssignment) -> None:
        teacher = self._teacher(tuple(created.section_assignment_ids))
        response = await self.client.request(
            "DELETE", f"/ws/xte/section/assignment/{created.dest_id}", params={"users_dcid": teacher, "force": "true"}
        )
        if response.status_code not in (204, 404):
            raise self._refused(response)

    async def write_scores(
        self, section_id: str, section_assignment_id: str, writes: list[ScoreWrite]
    ) -> list[ScoreRejection]:
        section = self.sections[section_id]
        params = {"users_dcid": section["staff_id"], "status": "A", "term_id": section["term_id"]}
        rejected: list[ScoreRejection] = []
        size = self.profile.score_batch_size
        for start in range(0, len(writes), size):
            batch = writes[start : start + size]
            while batch:
                body = {"assignment_scores": [score_row(section_assignment_id, w) for w in batch]}
                response = await self.client.request("PUT", "/ws/xte/score", params=params, json=body)
                if response.status_code == 200:
                    break
                refused = self._refused(response)
                offenders = self._offenders(response)
                if response.status_code != 409 or not offenders:
                    rejected.extend(ScoreRejection(w.student_dest_id, refused.code, refused.detail) for w in batch)
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

    async def read_scores(self, section_ids: list[str]) -> dict[tuple[str, str], ScorePayload]:
        return (await self._holdings(section_ids))[1]

    async def aclose(self) -> None:
        await self.client.aclose()
