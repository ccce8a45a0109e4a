"""A local PowerSchool emulator: the PowerTeacher Pro gradebook API a plugin sees.

The PowerTeacher Pro API is not public; this is the contract we chose, following
PowerSchool's published plugin endpoint list and what integrators have measured on
real servers. Every name below is PowerSchool's own.

Auth
    ``POST /oauth/access_token`` (form ``grant_type=client_credentials``, HTTP Basic
    ``client_id:client_secret``) answers ``{"access_token", "token_type": "Bearer",
    "expires_in": "<seconds, a string>"}``. Bad credentials: 401
    ``{"error": "invalid_client"}``. Every other call needs ``Authorization: Bearer``;
    an unknown or expired token is a 401 with ``WWW-Authenticate: Bearer
    error="invalid_token"`` (containing ``expired`` when it expired).

Reads (v1, paged with ``page``/``pagesize``, wrapped plural-then-singular)
    ``GET /ws/v1/section/{dcid}`` -> ``{"section": {...}}``;
    ``GET /ws/v1/section/{dcid}/section_enrollment`` ->
    ``{"section_enrollments": {"section_enrollment": [...]}}``;
    ``GET /ws/v1/school/{id}/student`` -> ``{"students": {"student": [...]}}``, and its
    ``/count`` -> ``{"resource": {"count": n}}``.

Gradebook (xte; every call names the acting teacher with ``users_dcid``, who must
teach each section touched, else 403 "User does not teach section")
    ``GET /ws/xte/teacher_category?users_dcid&year_id`` -> a plain array.
    ``GET /ws/xte/section/assignment/?users_dcid&section_ids=a,b`` -> a plain array.
    ``POST /ws/xte/section/assignment/?users_dcid`` with ``{"_assignmentsections":
    [...]}`` -> 201, empty body, ``Location: .../ws/xte/section/assignment/{assignmentid}``
    and ``AssignmentSectionIds: [..]``.
    ``GET|PUT|DELETE /ws/xte/section/assignment/{assignmentid}`` (PUT replaces every
    section; DELETE answers 412 "Assignment has grades associated" unless ``force=true``).
    ``PUT /ws/xte/score?users_dcid&status=A&term_id`` with ``{"assignment_scores":
    [...]}``: an upsert keyed by (assignmentsectionid, studentsdcid), all or nothing.
    A score with no value and no flag clears the student's score.
    ``POST /ws/xte/assignment/lookup`` with ``{"section_ids": [...]}`` -> the section's
    assignments with ``_assignmentscores`` embedded (the read-back path).

Stored grades (the schema-table API, plugins only)
    ``GET /ws/schema/table/storedgrades?projection=*&page&pagesize`` (at most 100 a page)
    -> ``{"name": "storedgrades", "record": [{"id", "name", "tables": {"storedgrades":
    {...}}}]}``, every value a string as PowerSchool sends them; ``.../count`` ->
    ``{"count": n}``. Terms: ``GET /ws/v1/school/{id}/term`` -> ``{"terms": {"term":
    [...]}}``; a student's ``state_province_id`` is the state's student id.

Refusals (409 ``{"message": "Validation Failed", "errors": [{"resource", "field",
"code"}]}`` unless noted), with the texts teachers see in Grade Sync:
    a name over 50 characters -> "Value may not contain more than 50 character(s).";
    no ``scoreentrypoints`` -> "Score entry points is required";
    an inactive category, or one not owned by the section's lead teacher ->
    "TeacherCategoryID is not active or does not belong to lead teacher for Section";
    the same name and due date in a section -> "An assignment already exists with this
    name {name} and due date {date} for one or more classes";
    a due date outside the section's term -> "Due date must be within the term";
    a score for a student not enrolled in the section -> "Student.id [dcid] does not
    have an AssignmentStudentAssociation in AssignmentSection.Id [asid]" (the whole
    batch is refused); a score for an unknown assignment section -> 500
    "Unable to find com.pearson.powerschool.xte.model.AssignmentSection with id {asid}".

Control (never faulted): ``GET /_emulator/stats``, ``GET|POST /_emulator/faults``,
``GET /_emulator/state``, ``GET /_emulator/writes`` (every write the emulator accepted, for
tests to count doubles on; in process: ``app.state.writes``, and ``app.state.faults``).
What a person does in PowerTeacher Pro's own screens is a method of the emulator
(:meth:`PowerSchoolEmulator.delete_by_hand`), never an API call: it is not in the log.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passback.emulators.app import emulator_app
from passback.emulators.faults import FaultConfig
from passback.emulators.state import StateFile

NAME_LIMIT = 50
TOKEN_SECONDS = 3600
ASSIGNMENT_SECTION_MODEL = "com.pearson.powerschool.xte.model.AssignmentSection"


def empty_state() -> dict[str, Any]:
    return {
        "next_id": 1000,
        "clients": {},
        "terms": {},
        "schools": {},
        "teachers": {},
        "students": {},
        "sections": {},
        "categories": {},
        "assignments": {},
        "scores": {},
        "storedgrades": {},
    }


class PowerSchoolEmulator:
    """State and rules of the emulated PowerSchool; the routes below are thin."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.tokens: dict[str, float] = {}
        self.requests: Counter[str] = Counter()
        self._index: dict[str, tuple[dict[str, Any], dict[str, Any]]] | None = None
        self._score_edits = 0  # bumped by every change this emulator makes to the scores
        self._by_asid: tuple[tuple[int, int, int], dict[int, list[str]]] | None = None

    # --- identity -----------------------------------------------------------------
    def new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        if self.state["clients"].get(client_id) != client_secret:
            return None
        token = secrets.token_hex(16)
        self.tokens[token] = time.monotonic() + TOKEN_SECONDS
        return token

    # --- lookups ------------------------------------------------------------------
    def section(self, dcid: Any) -> dict[str, Any] | None:
        return self.state["sections"].get(str(dcid))

    def teaches(self, users_dcid: str | None, section: dict[str, Any]) -> bool:
        return users_dcid is not None and str(section["staff_id"]) == str(users_dcid)

    def assignment_sections(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """Assignment sections by id; rebuilt only after an assignment changed."""
        if self._index is None:
            index: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
            for assignment in self.state["assignments"].values():
                for section in assignment["_assignmentsections"]:
                    index[str(section["assignmentsectionid"])] = (assignment, section)
            self._index = index
        return self._index

    def assignments_changed(self) -> None:
        self._index = None
        self._score_edits += 1

    def score_keys(self, asid: int) -> list[str]:
        """The keys of an assignment section's scores, from an index rebuilt after any change to the scores
        (by this emulator, or a change of their count from outside): the lookup of a course no longer reads
        every score of the district."""
        scores = self.state["scores"]
        guard = (id(scores), len(scores), self._score_edits)
        if self._by_asid is None or self._by_asid[0] != guard:
            index: dict[int, list[str]] = {}
            for key, score in scores.items():
                index.setdefault(score["assignmentsectionid"], []).append(key)
            self._by_asid = (guard, index)
        return self._by_asid[1].get(asid, [])

    def delete_by_hand(self, assignment_id: str) -> None:
        """A teacher deletes an assignment in PowerTeacher Pro: its sections and scores go with it."""
        assignment = self.state["assignments"].pop(str(assignment_id))
        asids = {s["assignmentsectionid"] for s in assignment["_assignmentsections"]}
        for key in [k for k in self.state["scores"] if int(k.split(":")[0]) in asids]:
            del self.state["scores"][key]
        self.assignments_changed()

    # --- assignment validation ----------------------------------------------------
    def validate_assignment(
        self, sections: list[dict[str, Any]], own_id: int | None
    ) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        for entry in sections:
            name = entry.get("name") or ""
            if len(name) > NAME_LIMIT:
                errors.append(
                    _error("AssignmentSection", "name", f"Value may not contain more than {NAME_LIMIT} character(s).")
                )
            if entry.get("scoreentrypoints") is None:
                errors.append(
                    _error("AssignmentSection", "scoreentrypoints", "Score entry points is required")
                )
            section = self.section(entry.get("sectionsdcid"))
            if section is None:
                errors.append(_error("AssignmentSection", "sectionsdcid", "Section not found"))
                continue
            for association in entry.get("_assignmentcategoryassociations") or []:
                category = self.state["categories"].get(str(association.get("teachercategoryid")))
                if (
                    category is None
                    or not category["isactive"]
                    or str(category["usersdcid"]) != str(section["staff_id"])
                ):
                    errors.append(
                        _error(
                            "AssignmentCategoryAssoc",
                            "teachercategoryid",
                            "TeacherCategoryID is not active or does not belong to lead "
                            "teacher for Section",
                        )
                    )
            due = entry.get("duedate")
            term = self.state["terms"].get(str(section["term_id"]))
            if due and term and not (term["firstday"] <= due <= term["lastday"]):
                errors.append(_error("AssignmentSection", "duedate", "Due date must be within the term"))
            for other in self.state["assignments"].values():
                if own_id is not None and other["assignmentid"] == own_id:
                    continue
                for existing in other["_assignmentsections"]:
                    if (
                        str(existing["sectionsdcid"]) == str(entry.get("sectionsdcid"))
                        and existing["name"] == name
                        and existing["duedate"] == due
                    ):
                        errors.append(
                            _error(
                                "Assignment",
                                "name",
                                f"An assignment already exists with this name {name} and due "
                                f"date {due} for one or more classes",
                            )
                        )
        return _unique(errors)

    def build_sections(
        self, entries: list[dict[str, Any]], assignment_id: int, keep: dict[str, int]
    ) -> list[dict[str, Any]]:
        built = []
        for entry in entries:
            section_dcid = int(entry["sectionsdcid"])
            asid = keep.get(str(section_dcid)) or self.new_id()
            categories = []
            for association in entry.get("_assignmentcategoryassociations") or []:
                category = self.state["categories"][str(association["teachercategoryid"])]
                categories.append(
                    {
                        "_name": "assignmentcategoryassoc",
                        "teachercategoryid": category["teachercategoryid"],
                        "isprimary": bool(association.get("isprimary", True)),
                        "_teachercategory": {
                            "_name": "teachercategory",
                            "name": category["name"],
                            "color": category["color"],
                        },
                    }
                )
            points = float(entry["scoreentrypoints"])
            weight = float(entry.get("weight") or 1)
            built.append(
                {
                    "_name": "assignmentsection",
                    "_id": asid,
                    "assignmentsectionid": asid,
                    "assignmentid": assignment_id,
                    "sectionsdcid": section_dcid,
                    "name": entry["name"],
                    "description": entry.get("description") or "",
                    "duedate": entry.get("duedate"),
                    "scoretype": entry.get("scoretype") or "POINTS",
                    "scoreentrypoints": points,
                    "totalpointvalue": float(entry.get("totalpointvalue") or points * weight),
                    "extracreditpoints": float(entry.get("extracreditpoints") or 0),
                    "weight": weight,
                    "iscountedinfinalgrade": bool(entry.get("iscountedinfinalgrade", True)),
                    "isscoringneeded": bool(entry.get("isscoringneeded", True)),
                    "isscorespublish": bool(entry.get("isscorespublish", True)),
                    "publishoption": entry.get("publishoption") or "Immediately",
                    "_assignmentcategoryassociations": categories,
                    "_assignmentstudentassociations": [],
                }
            )
        return built

    # --- scores -------------------------------------------------------------------
    def put_scores(self, rows: list[dict[str, Any]], users_dcid: str | None) -> tuple[int, Any]:
        index = self.assignment_sections()
        problems: list[dict[str, Any]] = []
        resolved = []
        rosters: dict[int, set[int]] = {}
        for row in rows:
            asid = str(
                (row.get("_assignmentsection") or {}).get("assignmentsectionid")
                or row.get("assignmentsectionid")
            )
            found = index.get(asid)
            if found is None:
                return 500, {"message": f"Unable to find {ASSIGNMENT_SECTION_MODEL} with id {asid}"}
            _, assignment_section = found
            section = self.section(assignment_section["sectionsdcid"])
            assert section is not None
            if not self.teaches(users_dcid, section):
                return 403, {"message": f"User does not teach section {section['id']} EDIT"}
            student = str(row.get("studentsdcid"))
            roster = rosters.get(section["id"])
            if roster is None:
                roster = rosters[section["id"]] = set(section["students"])
            if int(student) not in roster:
                problems.append(
                    {
                        "resource": "AssignmentScore",
                        "field": (
                            f"Student.id [{student}] does not have an AssignmentStudentAssociation "
                            f"in AssignmentSection.Id [{asid}]"
                        ),
                        "code": "AssignmentStudentAssociation",
                        "params": {"assignment_section_id": int(asid), "student_dcid": int(student)},
                    }
                )
                continue
            resolved.append((asid, student, row))
        if problems:
            return 409, {"message": "Validation Failed", "errors": problems}
        today = date.today().isoformat()
        for asid, student, row in resolved:
            key = f"{asid}:{student}"
            flags = {
                flag: bool(row.get(flag, False))
                for flag in ("islate", "ismissing", "isexempt", "isincomplete", "iscollected", "isabsent")
            }
            points = row.get("scorepoints")
            entered = row.get("actualscoreentered")
            if points is None and entered is None and not any(flags.values()):
                self.state["scores"].pop(key, None)
                continue
            self.state["scores"][key] = {
                "_name": "assignmentscore",
                "assignmentsectionid": int(asid),
                "studentsdcid": int(student),
                "actualscoreentered": entered,
                "actualscorekind": row.get("actualscorekind") if entered is not None else None,
                "scorepoints": None if points is None else float(points),
                "scorepercent": row.get("scorepercent"),
                "scorelettergrade": row.get("scorelettergrade"),
                **flags,
                "scoreentrydate": time.strftime("%Y-%m-%d %H:%M:%S"),
                "whenmodified": today,
            }
        self._score_edits += 1
        return 200, {
            "assignment_scores": [
                {"_name": "assignmentscore", "studentsdcid": int(student)} for _, student, _ in resolved
            ]
        }


def _error(resource: str, field: str, code: str) -> dict[str, Any]:
    return {"resource": resource, "field": field, "code": code}


def _unique(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, unique = set(), []
    for error in errors:
        key = json.dumps(error, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(error)
    return unique


def _validation(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"message": "Validation Failed", "errors": errors}, status_code=409)


def _page(request: Request, items: list[Any]) -> list[Any]:
    page = max(int(request.query_params.get("page", 1)), 1)
    size = min(max(int(request.query_params.get("pagesize", 100)), 1), 100)
    return items[(page - 1) * size : page * size]


def create_app(
    state: dict[str, Any] | None = None,
    faults: FaultConfig | None = None,
    state_path: Path | None = None,
) -> Starlette:
    store = StateFile(state_path)
    emu = PowerSchoolEmulator(state or store.load() or empty_state())
    faults = faults or FaultConfig()

    def authorized(request: Request) -> Response | None:
        emu.requests[f"{request.method} {request.scope['route_key']}"] += 1
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        expires = emu.tokens.get(token)
        if expires is None:
            return JSONResponse(
                {"message": "Invalid access token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if expires < time.monotonic():
            return JSONResponse(
                {"message": "Access token expired"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'},
            )
        return None

    READS_BY_POST = frozenset({"/ws/xte/assignment/lookup"})  # a POST that only reads

    def route(path: str, methods: list[str], key: str | None = None):  # type: ignore[no-untyped-def]
        def wrap(handler):  # type: ignore[no-untyped-def]
            async def endpoint(request: Request) -> Response:
                request.scope["route_key"] = key or path
                denied = authorized(request)
                if denied is not None:
                    return denied
                response = await handler(request)
                if request.method != "GET" and path not in READS_BY_POST:
                    store.dirty = True  # only a write makes the state file worth saving again
                return response

            return Route(path, endpoint, methods=methods)

        return wrap

    async def token(request: Request) -> Response:
        emu.requests["POST /oauth/access_token"] += 1
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
            assert scheme.lower() == "basic"
        except Exception:  # noqa: BLE001 - any malformed header is the same refusal
            client_id = client_secret = ""
        issued = emu.issue_token(client_id, client_secret)
        if issued is None:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Bad client credentials"},
                status_code=401,
            )
        return JSONResponse(
            {"access_token": issued, "token_type": "Bearer", "expires_in": str(TOKEN_SECONDS)}
        )

    @route("/ws/v1/section/{dcid:int}", ["GET"])
    async def get_section(request: Request) -> Response:
        section = emu.section(request.path_params["dcid"])
        if section is None:
            return JSONResponse({"message": "Section not found"}, status_code=404)
        public = {k: v for k, v in section.items() if k != "students"}
        return JSONResponse({"section": public})

    @route("/ws/v1/section/{dcid:int}/section_enrollment", ["GET"])
    async def section_enrollment(request: Request) -> Response:
        section = emu.section(request.path_params["dcid"])
        if section is None:
            return JSONResponse({"message": "Section not found"}, status_code=404)
        rows = [
            {
                "id": section["id"] * 10_000 + index,
                "section_id": section["id"],
                "student_id": student,
                "entry_date": emu.state["terms"][str(section["term_id"])]["firstday"],
                "exit_date": emu.state["terms"][str(section["term_id"])]["lastday"],
                "dropped": False,
            }
            for index, student in enumerate(section["students"])
        ]
        return JSONResponse({"section_enrollments": {"section_enrollment": _page(request, rows)}})

    @route("/ws/v1/school/{school:int}/student", ["GET"])
    async def school_students(request: Request) -> Response:
        school = request.path_params["school"]
        rows = [s for s in emu.state["students"].values() if s["school_id"] == school]
        rows.sort(key=lambda s: s["id"])
        return JSONResponse({"students": {"student": _page(request, rows)}})

    @route("/ws/v1/school/{school:int}/student/count", ["GET"])
    async def school_student_count(request: Request) -> Response:
        school = request.path_params["school"]
        count = sum(1 for s in emu.state["students"].values() if s["school_id"] == school)
        return JSONResponse({"resource": {"count": count}})

    @route("/ws/schema/table/storedgrades", ["GET"])
    async def stored_grades(request: Request) -> Response:
        page = max(int(request.query_params.get("page", 1)), 1)
        size = min(max(int(request.query_params.get("pagesize", 100)), 1), 100)
        rows = sorted(emu.state.get("storedgrades", {}).values(), key=lambda r: int(r["dcid"]))
        chunk = rows[(page - 1) * size : page * size]
        return JSONResponse({"name": "storedgrades", "record": [
            {"id": int(r["dcid"]), "name": "storedgrades",
             "tables": {"storedgrades": {k: "" if v is None else str(v) for k, v in r.items()}}} for r in chunk]})

    @route("/ws/schema/table/storedgrades/count", ["GET"])
    async def stored_grades_count(request: Request) -> Response:
        return JSONResponse({"count": len(emu.state.get("storedgrades", {}))})

    @route("/ws/v1/school/{school:int}", ["GET"])
    async def school(request: Request) -> Response:
        found = emu.state["schools"].get(str(request.path_params["school"]))
        if found is None:
            return JSONResponse({"message": "School not found"}, status_code=404)
        return JSONResponse({"school": found})

    @route("/ws/v1/school/{school:int}/term", ["GET"])
    async def school_terms(request: Request) -> Response:
        rows = [t for t in emu.state["terms"].values() if int(t.get("school_id", request.path_params["school"]))
                == request.path_params["school"]]
        return JSONResponse({"terms": {"term": _page(request, sorted(rows, key=lambda t: t["id"]))}})

    @route("/ws/xte/teacher_category", ["GET"])
    async def teacher_categories(request: Request) -> Response:
        users_dcid = request.query_params.get("users_dcid")
        if not users_dcid:
            return JSONResponse({"message": "users_dcid is required for OAuth clients"}, status_code=400)
        rows = [c for c in emu.state["categories"].values() if str(c["usersdcid"]) == users_dcid]
        return JSONResponse(rows)

    def teacher_guard(request: Request, section_ids: list[Any]) -> Response | None:
        users_dcid = request.query_params.get("users_dcid")
        if not users_dcid:
            return JSONResponse({"message": "users_dcid is required for OAuth clients"}, status_code=400)
        for dcid in section_ids:
            section = emu.section(dcid)
            if section is None or not emu.teaches(users_dcid, section):
                return JSONResponse({"message": f"User does not teach section {dcid} EDIT"}, status_code=403)
        return None

    @route("/ws/xte/section/assignment/", ["GET", "POST"], key="/ws/xte/section/assignment/")
    async def assignments(request: Request) -> Response:
        if request.method == "GET":
            wanted = [s for s in request.query_params.get("section_ids", "").split(",") if s]
            denied = teacher_guard(request, wanted)
            if denied:
                return denied
            rows = [
                a
                for a in emu.state["assignments"].values()
                if any(str(s["sectionsdcid"]) in wanted for s in a["_assignmentsections"])
            ]
            return JSONResponse(rows)
        body = await request.json()
        entries = body.get("_assignmentsections") or []
        if not entries:
            return _validation([_error("Assignment", "_assignmentsections", "At least one section is required")])
        denied = teacher_guard(request, [e.get("sectionsdcid") for e in entries])
        if denied:
            return denied
        errors = emu.validate_assignment(entries, own_id=None)
        if errors:
            return _validation(errors)
        assignment_id = emu.new_id()
        built = emu.build_sections(entries, assignment_id, keep={})
        emu.state["assignments"][str(assignment_id)] = {
            "_name": "assignment",
            "_id": assignment_id,
            "assignmentid": assignment_id,
            "hasstandards": False,
            "standardscoringmethod": "GradeScale",
            "_assignmentsections": built,
        }
        emu.assignments_changed()
        return Response(
            status_code=201,
            headers={
                "Location": f"{request.base_url}ws/xte/section/assignment/{assignment_id}",
                "AssignmentSectionIds": json.dumps([s["assignmentsectionid"] for s in built]),
            },
        )

    @route("/ws/xte/section/assignment/{assignment_id:int}", ["GET", "PUT", "DELETE"],
           key="/ws/xte/section/assignment/{id}")
    async def assignment(request: Request) -> Response:
        key = str(request.path_params["assignment_id"])
        current = emu.state["assignments"].get(key)
        if current is None:
            return JSONResponse({"message": f"Assignment {key} not found"}, status_code=404)
        denied = teacher_guard(request, [s["sectionsdcid"] for s in current["_assignmentsections"]])
        if denied:
            return denied
        if request.method == "GET":
            return JSONResponse(current)
        asids = {str(s["sectionsdcid"]): s["assignmentsectionid"] for s in current["_assignmentsections"]}
        if request.method == "DELETE":
            scored = [k for k in emu.state["scores"] if int(k.split(":")[0]) in asids.values()]
            if scored and request.query_params.get("force") != "true":
                return JSONResponse({"message": "Assignment has grades associated"}, status_code=412)
            for score_key in scored:
                del emu.state["scores"][score_key]
            del emu.state["assignments"][key]
            emu.assignments_changed()
            return Response(status_code=204)
        body = await request.json()
        entries = body.get("_assignmentsections") or []
        denied = teacher_guard(request, [e.get("sectionsdcid") for e in entries])
        if denied:
            return denied
        errors = emu.validate_assignment(entries, own_id=int(key))
        if errors:
            return _validation(errors)
        built = emu.build_sections(entries, int(key), keep=asids)
        kept = {s["assignmentsectionid"] for s in built}
        for score_key in [k for k in emu.state["scores"] if int(k.split(":")[0]) not in kept]:
            if int(score_key.split(":")[0]) in asids.values():
                del emu.state["scores"][score_key]
        current["_assignmentsections"] = built
        emu.assignments_changed()
        return Response(
            status_code=204,
            headers={"AssignmentSectionIds": json.dumps([s["assignmentsectionid"] for s in built])},
        )

    @route("/ws/xte/score", ["PUT"])
    async def put_scores(request: Request) -> Response:
        body = await request.json()
        rows = body.get("assignment_scores")
        if not isinstance(rows, list):
            return JSONResponse({"message": "assignment_scores is required"}, status_code=400)
        status, payload = emu.put_scores(rows, request.query_params.get("users_dcid"))
        return JSONResponse(payload, status_code=status)

    @route("/ws/xte/assignment/lookup", ["POST"])
    async def lookup(request: Request) -> Response:
        body = await request.json()
        wanted = {str(s) for s in body.get("section_ids") or []}
        students = {int(s) for s in body.get("student_ids") or []}
        held = emu.state["scores"]

        def scores_of(asid: int) -> list[dict[str, Any]]:
            found = (held[k] for k in emu.score_keys(asid) if k in held)
            return [s for s in found if not students or s["studentsdcid"] in students]

        rows = []
        for assignment_row in emu.state["assignments"].values():
            sections = [s for s in assignment_row["_assignmentsections"] if str(s["sectionsdcid"]) in wanted]
            if not sections:
                continue
            rows.append(
                {
                    **assignment_row,
                    "_assignmentsections": [
                        {**s, "_assignmentscores": scores_of(s["assignmentsectionid"])} for s in sections
                    ],
                }
            )
        return Response(orjson.dumps(rows), media_type="application/json")  # a course's is megabytes: orjson writes it

    routes = [
        Route("/oauth/access_token", token, methods=["POST"]),
        Route("/oauth/access_token/", token, methods=["POST"]),
        get_section,
        section_enrollment,
        school_students,
        school_student_count,
        teacher_categories,
        stored_grades,
        stored_grades_count,
        school,
        school_terms,
        assignments,
        assignment,
        put_scores,
        lookup,
    ]
    app = emulator_app(routes, emulator=emu, faults=faults, state_file=store)
    app.state.faults = faults
    return app
