"""A local Canvas LMS emulator: the REST endpoints grade passback reads, field for field.

Contract (canvas-lms ``lib/api.rb``, ``app/middleware/request_throttle.rb``,
``lib/api/v1/*.rb``):

* Auth: ``Authorization: Bearer <token>``; a bad token is 401 with
  ``WWW-Authenticate: Bearer realm="canvas-lms"`` and
  ``{"errors":[{"message":"Invalid access token."}]}``. Unknown records are 404
  ``{"errors":[{"message":"The specified resource does not exist."}]}``.
* Paging: ``per_page`` (default 10, clamped to ``max_per_page``, 100) and ``page``; one
  ``Link`` header with absolute URLs, rels in the order current, next, prev, first, last.
  Submissions and enrollments use bookmark pages (``page=bookmark:...``, no ``last``).
  A page past the end is ``200 []``.
* Throttling: a leaky bucket per token (high water mark 600, outflow 10 units/s, 50 up
  front). Canvas charges a request its CPU and database seconds; the emulator charges
  0.2 units plus 0.004 per record returned (a full page of 100 costs 0.6). Every answer carries
``X-Request-Cost`` and ``X-Rate-Limit-Remaining``; a full
  bucket answers 403, ``text/plain``, ``403 Forbidden (Rate Limit Exceeded)``.
* Reads: courses (``include[]=term``), sections, enrollments, assignment groups,
  assignments (``include[]=overrides``), the bulk submissions listing
  ``/api/v1/courses/:id/students/submissions`` (``student_ids[]=all``,
  ``assignment_ids[]``, ``workflow_state``, ``graded_since``), grading standards, and the
  SIS Integration API ``/api/sis/courses/:id/assignments``.
* Writes a teacher makes: create/update assignment groups (top-level ``name``,
  ``sis_source_id``, ``integration_data``), create/update assignments
  (``assignment[...]``), grade a submission (``submission[posted_grade]``,
  ``submission[excused]``, ``submission[late_policy_status]``), resubmit
  (``POST .../submissions`` as the student). A letter posted to a ``letter_grade``
  assignment is scored as Canvas's ``GradingStandard#grade_to_score`` does: the top band
  is 100%, any other letter one point under the bottom of the band above it (a tenth of a
  point where the bands are closer than that); a number posted is given the letter of its
  band. The scheme is the assignment's grading standard, else the course's, else Canvas's
  default.

* LTI 1.3: Canvas as the platform that launches a tool from a course's navigation
  (``passback.emulators.lti_platform``: developer keys, the launch, the authorization
  endpoint, the platform's JWKS; in process ``app.state.lti_platform``), and its LTI
  Advantage services (``passback.emulators.canvas_ags``: the client-credentials token
  endpoint, line items backed by assignments, scores, results, names and roles).

* Live Events (``passback.emulators.canvas_live_events``): a grade saved (``PUT
  .../submissions/:user_id``) emits ``grade_change`` (when the grade moved) and
  ``submission_updated``; a resubmission ``submission_updated``; an assignment created,
  updated or deleted ``assignment_created`` / ``assignment_updated`` (a deletion with
  ``workflow_state`` ``deleted``, as Canvas deletes softly). Each is posted, signed (RS256,
  ``kid``), to every subscription in the background; the keys are at ``GET /live_events/jwks``.

Control (never faulted or throttled): ``/_emulator/stats``, ``/_emulator/faults``,
``/_emulator/throttle``, ``/_emulator/state``, ``/_emulator/writes`` (every write the
emulator accepted; in process ``app.state.writes``, and ``app.state.faults``),
``/_emulator/lti/developer_keys``, ``/_emulator/live_events/...`` (subscriptions, key
rotation, the delivery log; in process ``app.state.live_events``) and ``POST
/_emulator/live_events/grades`` ``{"grades": [{"course_id", "assignment_id", "user_id",
"posted_grade"}], "grader_id"}``: grades saved as a teacher would, each emitting its events.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from passback.emulators.app import emulator_app
from passback.emulators.canvas_ags import ags_routes
from passback.emulators.canvas_live_events import LiveEventsPublisher, Origin, live_event_routes
from passback.emulators.faults import FaultConfig
from passback.emulators.lti_platform import LtiPlatform, lti_routes
from passback.emulators.state import StateFile

NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
THROTTLED_BODY = "403 Forbidden (Rate Limit Exceeded)\n"
DEFAULT_GRADING_SCHEME = (  # Canvas's default grading standard: a letter and the bottom of its band
    ("A", 0.94), ("A-", 0.90), ("B+", 0.87), ("B", 0.84), ("B-", 0.80), ("C+", 0.77),
    ("C", 0.74), ("C-", 0.70), ("D+", 0.67), ("D", 0.64), ("D-", 0.61), ("F", 0.0),
)
ASSIGNMENT_FIELDS = (
    "name", "description", "due_at", "unlock_at", "lock_at", "points_possible", "grading_type",
    "assignment_group_id", "post_to_sis", "published", "only_visible_to_overrides",
    "omit_from_final_grade", "grading_standard_id",
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_state() -> dict[str, Any]:
    return {
        "next_id": 100,
        "tokens": {},
        "terms": {},
        "courses": {},
        "sections": {},
        "users": {},
        "enrollments": {},
        "assignment_groups": {},
        "assignments": {},
        "submissions": {},
        "grading_standards": {},
    }


class Throttle:
    """Canvas's leaky bucket, one per access token."""

    def __init__(self, hwm: float = 600.0, outflow: float = 10.0, up_front: float = 50.0,
                 request_cost: float = 0.2, per_item_cost: float = 0.004) -> None:
        self.hwm = hwm
        self.outflow = outflow
        self.up_front = up_front
        self.request_cost = request_cost
        self.per_item_cost = per_item_cost
        self.buckets: dict[str, tuple[float, float]] = {}
        self.throttled = 0
        self.charged = 0.0  # every answered request's cost, summed (what the bucket had to drain)

    def level(self, key: str) -> float:
        count, at = self.buckets.get(key, (0.0, time.monotonic()))
        now = time.monotonic()
        count = max(0.0, count - (now - at) * self.outflow)
        self.buckets[key] = (count, now)
        return count

    def admit(self, key: str) -> bool:
        count = self.level(key)
        if count >= self.hwm:
            self.throttled += 1
            return False
        self.buckets[key] = (count + self.up_front, time.monotonic())
        return True

    def charge(self, key: str, items: int) -> tuple[float, float]:
        cost = round(self.request_cost + self.per_item_cost * items, 4)
        self.charged += cost
        count = self.level(key) - self.up_front + cost
        self.buckets[key] = (max(count, 0.0), time.monotonic())
        return cost, round(self.hwm - max(count, 0.0), 4)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hwm": self.hwm, "outflow": self.outflow, "up_front": self.up_front,
            "request_cost": self.request_cost, "per_item_cost": self.per_item_cost,
            "throttled": self.throttled,
        }


class CanvasEmulator:
    def __init__(self, state: dict[str, Any], max_per_page: int = 100) -> None:
        self.state = state
        self.max_per_page = max_per_page
        self.requests: Counter[str] = Counter()
        self.asked: deque[str] = deque(maxlen=100_000)  # each request as sent (path and query), newest last

    def new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def course(self, course_id: str) -> dict[str, Any] | None:
        if course_id.startswith("sis_course_id:"):
            wanted = course_id.removeprefix("sis_course_id:")
            return next((c for c in self.state["courses"].values() if c.get("sis_course_id") == wanted), None)
        return self.state["courses"].get(course_id)

    def course_sections(self, course_id: int) -> list[dict[str, Any]]:
        return sorted(
            (s for s in self.state["sections"].values() if s["course_id"] == course_id),
            key=lambda s: s["id"],
        )

    def student_enrollments(self, course_id: int) -> list[dict[str, Any]]:
        return sorted(
            (
                e for e in self.state["enrollments"].values()
                if e["course_id"] == course_id and e["type"] == "StudentEnrollment"
            ),
            key=lambda e: e["id"],
        )

    def assigned_students(self, assignment: dict[str, Any],
                          enrollments: list[dict[str, Any]] | None = None) -> list[int]:
        if enrollments is None:
            enrollments = self.student_enrollments(assignment["course_id"])
        if not assignment.get("only_visible_to_overrides"):
            return sorted({e["user_id"] for e in enrollments})
        students: set[int] = set()
        for override in assignment.get("overrides", []):
            if "course_section_id" in override:
                students |= {e["user_id"] for e in enrollments if e["course_section_id"] == override["course_section_id"]}
            students |= set(override.get("student_ids", []))
        return sorted(students)

    def submission(self, assignment: dict[str, Any], user_id: int) -> dict[str, Any]:
        key = f"{assignment['id']}:{user_id}"
        stored = self.state["submissions"].get(key)
        if stored is not None:
            return stored
        return {
            "id": assignment["id"] * 100_000 + user_id, "user_id": user_id, "assignment_id": assignment["id"],
            "score": None, "grade": None, "entered_score": None, "entered_grade": None,
            "excused": False, "attempt": None, "submitted_at": None, "graded_at": None,
            "grader_id": None, "grade_matches_current_submission": True, "workflow_state": "unsubmitted",
            "late_policy_status": None, "points_deducted": None, "posted_at": None,
            "late": False, "missing": False, "seconds_late": 0, "submission_type": None,
        }

    def grading_scheme(self, assignment: dict[str, Any]) -> list[tuple[str, float]]:
        """The letters of the assignment's grading standard, highest band first."""
        course = self.state["courses"].get(str(assignment["course_id"])) or {}
        for standard_id in (assignment.get("grading_standard_id"), course.get("grading_standard_id")):
            standard = self.state["grading_standards"].get(str(standard_id)) if standard_id else None
            if standard is not None:
                pairs = [(str(e["name"]), float(e["value"])) for e in standard["grading_scheme"]]
                return sorted(pairs, key=lambda pair: -pair[1])
        return list(DEFAULT_GRADING_SCHEME)

    def assignment_json(self, assignment: dict[str, Any], include: list[str], base: str) -> dict[str, Any]:
        body = {k: v for k, v in assignment.items() if k != "overrides"}
        body["html_url"] = f"{base}courses/{assignment['course_id']}/assignments/{assignment['id']}"
        body["has_overrides"] = bool(assignment.get("overrides"))
        body["visible_to_everyone"] = not assignment.get("only_visible_to_overrides", False)
        body["workflow_state"] = "published" if assignment.get("published") else "unpublished"
        if "overrides" in include:
            body["overrides"] = assignment.get("overrides", [])
        return body


def _paginate(request: Request, items: list[Any], per_page_max: int, bookmark: bool = False
              ) -> tuple[list[Any], str]:
    per_page = min(max(int(request.query_params.get("per_page", 10)), 1), per_page_max)
    raw_page = request.query_params.get("page", "1")
    if raw_page.startswith("bookmark:"):
        start = json.loads(base64.urlsafe_b64decode(raw_page.removeprefix("bookmark:") + "=="))
        page_number = None
    else:
        page_number = max(int(raw_page), 1)
        start = (page_number - 1) * per_page
    chunk = items[start : start + per_page]
    params = [(k, v) for k, v in request.query_params.multi_items()
              if k not in ("page", "per_page", "access_token")]
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"

    def link(page: str, rel: str) -> str:
        query = urlencode(params + [("page", page), ("per_page", str(per_page))])
        return f'<{base}?{query}>; rel="{rel}"'

    def mark(offset: int) -> str:
        return "bookmark:" + base64.urlsafe_b64encode(json.dumps(offset).encode()).decode().rstrip("=")

    links = []
    if bookmark:
        links.append(link(raw_page if page_number is None else mark(start), "current"))
        if start + per_page < len(items):
            links.append(link(mark(start + per_page), "next"))
        links.append(link(mark(0), "first"))
    else:
        last = max((len(items) + per_page - 1) // per_page, 1)
        links.append(link(str(page_number), "current"))
        if page_number and page_number < last:
            links.append(link(str(page_number + 1), "next"))
        if page_number and page_number > 1:
            links.append(link(str(page_number - 1), "prev"))
        links.append(link("1", "first"))
        links.append(link(str(last), "last"))
    return chunk, ",".join(links)


def _list_param(request: Request, name: str) -> list[str]:
    return request.query_params.getlist(f"{name}[]") or request.query_params.getlist(name)


def _bool(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


async def _params(request: Request) -> dict[str, Any]:
    """Rails-style params from a JSON or form body: ``a[b]=1`` becomes ``{"a": {"b": "1"}}``."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return await request.json()
    form = await request.form()
    params: dict[str, Any] = {}
    for key, value in form.multi_items():
        if "[" in key:
            outer, _, inner = key.partition("[")
            params.setdefault(outer, {})[inner.rstrip("]")] = value
        else:
            params[key] = value
    return params


def create_app(
    state: dict[str, Any] | None = None,
    faults: FaultConfig | None = None,
    state_path: Path | None = None,
    throttle: Throttle | None = None,
    max_per_page: int = 100,
) -> Starlette:
    store = StateFile(state_path)
    emu = CanvasEmulator(state or store.load() or empty_state(), max_per_page=max_per_page)
    faults = faults or FaultConfig()
    throttle = throttle or Throttle()
    publisher = LiveEventsPublisher(emu, mark_dirty=lambda: setattr(store, "dirty", True))

    def actor(request: Request) -> int | None:
        """The user the request's token belongs to (who made the change, in an event's metadata)."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else (
            request.query_params.get("access_token", ""))
        found = emu.state["tokens"].get(token) or {}
        return found.get("user_id")

    def origin(request: Request, user_id: int | None = None) -> Origin:
        return Origin.of(request, actor(request) if user_id is None else user_id)

    def route(path: str, methods: list[str]):  # type: ignore[no-untyped-def]
        def wrap(handler):  # type: ignore[no-untyped-def]
            async def endpoint(request: Request) -> Response:
                emu.requests[f"{request.method} {path}"] += 1
                emu.asked.append(f"{request.method} {request.url.path}?{request.url.query}")
                header = request.headers.get("authorization", "")
                token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else (
                    request.query_params.get("access_token", ""))
                if token not in emu.state["tokens"]:
                    return JSONResponse(
                        {"errors": [{"message": "Invalid access token."}]},
                        status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},
                    )
                if not throttle.admit(token):
                    return PlainTextResponse(
                        THROTTLED_BODY, status_code=403, headers={"X-Rate-Limit-Remaining": "0.0"}
                    )
                response, items = await handler(request)
                cost, remaining = throttle.charge(token, items)
                response.headers["X-Request-Cost"] = str(cost)
                response.headers["X-Rate-Limit-Remaining"] = str(remaining)
                if request.method != "GET":
                    store.dirty = True
                return response

            return Route(path, endpoint, methods=methods)

        return wrap

    def listing(request: Request, items: list[Any], bookmark: bool = False) -> tuple[Response, int]:
        chunk, link = _paginate(request, items, emu.max_per_page, bookmark=bookmark)
        return JSONResponse(chunk, headers={"Link": link}), len(chunk)

    def not_found() -> tuple[Response, int]:
        return JSONResponse(NOT_FOUND, status_code=404), 0

    def base_url(request: Request) -> str:
        return str(request.base_url)

    @route("/api/v1/courses", ["GET"])
    async def courses(request: Request) -> tuple[Response, int]:
        return listing(request, sorted(emu.state["courses"].values(), key=lambda c: c["id"]))

    @route("/api/v1/courses/{course_id}", ["GET"])
    async def course(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        body = dict(found)
        if "term" in _list_param(request, "include"):
            body["term"] = emu.state["terms"].get(str(found["enrollment_term_id"]))
        return JSONResponse(body), 1

    @route("/api/v1/courses/{course_id}/sections", ["GET"])
    async def sections(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        rows = emu.course_sections(found["id"])
        if "total_students" in _list_param(request, "include"):
            enrollments = emu.student_enrollments(found["id"])
            rows = [
                {**s, "total_students": sum(1 for e in enrollments if e["course_section_id"] == s["id"])}
                for s in rows
            ]
        return listing(request, rows)

    @route("/api/v1/courses/{course_id}/enrollments", ["GET"])
    async def enrollments(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        types = _list_param(request, "type")
        states = _list_param(request, "state") or ["active", "invited"]
        rows = sorted(
            (e for e in emu.state["enrollments"].values() if e["course_id"] == found["id"]),
            key=lambda e: e["id"],
        )
        rows = [
            {**e, "user": emu.state["users"][str(e["user_id"])],
             "sis_user_id": emu.state["users"][str(e["user_id"])]["sis_user_id"]}
            for e in rows
            if (not types or e["type"] in types) and e["enrollment_state"] in states
        ]
        return listing(request, rows, bookmark=True)

    @route("/api/v1/courses/{course_id}/assignment_groups", ["GET", "POST"])
    async def assignment_groups(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        if request.method == "POST":
            params = await _params(request)
            if not params.get("name"):
                return JSONResponse({"errors": {"name": [{"attribute": "name", "type": "blank", "message": "blank"}]}},
                                    status_code=400), 0
            group_id = emu.new_id()
            existing = [g for g in emu.state["assignment_groups"].values() if g["course_id"] == found["id"]]
            group = {
                "id": group_id, "course_id": found["id"], "name": params["name"],
                "position": len(existing) + 1, "group_weight": float(params.get("group_weight") or 0),
                "sis_source_id": params.get("sis_source_id"), "integration_data": params.get("integration_data") or {},
                "rules": {},
            }
            emu.state["assignment_groups"][str(group_id)] = group
            return JSONResponse({k: v for k, v in group.items() if k != "course_id"}), 1
        rows = sorted(
            ({k: v for k, v in g.items() if k != "course_id"}
             for g in emu.state["assignment_groups"].values() if g["course_id"] == found["id"]),
            key=lambda g: (g["position"], g["id"]),
        )
        return listing(request, rows)

    @route("/api/v1/courses/{course_id}/assignment_groups/{group_id}", ["GET", "PUT", "DELETE"])
    async def assignment_group(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        group = emu.state["assignment_groups"].get(request.path_params["group_id"])
        if found is None or group is None or group["course_id"] != found["id"]:
            return not_found()
        if request.method == "PUT":
            params = await _params(request)
            for key in ("name", "sis_source_id", "integration_data", "position"):
                if key in params:
                    group[key] = params[key]
            if "group_weight" in params:
                group["group_weight"] = float(params["group_weight"])
        elif request.method == "DELETE":
            del emu.state["assignment_groups"][str(group["id"])]
        return JSONResponse({k: v for k, v in group.items() if k != "course_id"}), 1

    @route("/api/v1/courses/{course_id}/assignments", ["GET", "POST"])
    async def assignments(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        if request.method == "POST":
            params = (await _params(request)).get("assignment") or {}
            if not params.get("name"):
                return JSONResponse({"errors": {"name": [{"attribute": "name", "type": "blank", "message": "blank"}]}},
                                    status_code=400), 0
            assignment_id = emu.new_id()
            row = _new_assignment(assignment_id, found["id"], params)
            emu.state["assignments"][str(assignment_id)] = row
            publisher.emit("assignment_created", found, publisher.assignment_body(row, request.url.netloc),
                           origin(request))
            return JSONResponse(emu.assignment_json(row, ["overrides"], base_url(request))), 1
        include = _list_param(request, "include")
        rows = sorted(
            (a for a in emu.state["assignments"].values() if a["course_id"] == found["id"]),
            key=lambda a: (a.get("position", 0), a["id"]),
        )
        return listing(request, [emu.assignment_json(a, include, base_url(request)) for a in rows])

    @route("/api/v1/courses/{course_id}/assignments/{assignment_id}", ["GET", "PUT", "DELETE"])
    async def assignment(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        row = emu.state["assignments"].get(request.path_params["assignment_id"])
        if found is None or row is None or row["course_id"] != found["id"]:
            return not_found()
        if request.method == "PUT":
            params = (await _params(request)).get("assignment") or {}
            _apply_assignment(row, params)
            row["updated_at"] = now_iso()
            publisher.emit("assignment_updated", found, publisher.assignment_body(row, request.url.netloc),
                           origin(request))
        elif request.method == "DELETE":
            del emu.state["assignments"][str(row["id"])]
            row["updated_at"] = now_iso()
            publisher.emit("assignment_updated", found, publisher.assignment_body(row, request.url.netloc, "deleted"),
                           origin(request))
        return JSONResponse(emu.assignment_json(row, _list_param(request, "include") + ["overrides"], base_url(request))), 1

    @route("/api/v1/courses/{course_id}/assignments/{assignment_id}/submissions/{user_id}", ["GET", "PUT"])
    async def grade(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        row = emu.state["assignments"].get(request.path_params["assignment_id"])
        user_id = int(request.path_params["user_id"])
        if found is None or row is None or row["course_id"] != found["id"] or user_id not in emu.assigned_students(row):
            return not_found()
        old = emu.submission(row, user_id)
        submission = dict(old)
        if request.method == "PUT":
            params = (await _params(request)).get("submission") or {}
            try:
                _grade(submission, row, params, emu.grading_scheme(row))
            except ValueError:
                return JSONResponse({"errors": [{"message": "Invalid grade"}]}, status_code=400), 0
            emu.state["submissions"][f"{row['id']}:{user_id}"] = submission
            publisher.emit_grade(found, row, old, submission, origin(request))
        return JSONResponse(submission), 1

    @route("/api/v1/courses/{course_id}/assignments/{assignment_id}/submissions", ["POST"])
    async def submit(request: Request) -> tuple[Response, int]:
        """A student's (re)submission; the token's user is given as ``as_user_id``."""
        found = emu.course(request.path_params["course_id"])
        row = emu.state["assignments"].get(request.path_params["assignment_id"])
        params = await _params(request)
        user_id = int(params.get("as_user_id") or request.query_params.get("as_user_id") or 0)
        if found is None or row is None or user_id not in emu.assigned_students(row):
            return not_found()
        submission = dict(emu.submission(row, user_id))
        submission["attempt"] = (submission.get("attempt") or 0) + 1
        submission["submitted_at"] = now_iso()
        submission["submission_type"] = "online_text_entry"
        submission["missing"] = False
        if submission.get("score") is not None:
            submission["grade_matches_current_submission"] = False
        submission["workflow_state"] = "submitted"
        emu.state["submissions"][f"{row['id']}:{user_id}"] = submission
        publisher.emit("submission_updated", found, publisher.submission_body(row, submission), origin(request, user_id))
        return JSONResponse(submission), 1

    @route("/api/v1/courses/{course_id}/students/submissions", ["GET"])
    async def bulk_submissions(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        return _submissions_of(request, found, None)

    @route("/api/v1/sections/{section_id}/students/submissions", ["GET"])
    async def section_submissions(request: Request) -> tuple[Response, int]:
        """The same listing for one section's students (Canvas routes both to one action)."""
        section = emu.state["sections"].get(request.path_params["section_id"])
        found = emu.course(str(section["course_id"])) if section else None
        if section is None or found is None:
            return not_found()
        members = {e["user_id"] for e in emu.student_enrollments(found["id"]) if e["course_section_id"] == section["id"]}
        return _submissions_of(request, found, members)

    def _submissions_of(request: Request, found: dict[str, Any], members: set[int] | None) -> tuple[Response, int]:
        student_ids = _list_param(request, "student_ids")
        if not student_ids:
            return JSONResponse([]), 0
        wanted_students = None if "all" in student_ids else {int(s) for s in student_ids}
        published = {
            a["id"]: a for a in emu.state["assignments"].values()
            if a["course_id"] == found["id"] and a.get("published")
        }
        wanted_assignments = _list_param(request, "assignment_ids")
        if wanted_assignments:
            ids = {int(a) for a in wanted_assignments}
            if not ids <= set(published):
                return JSONResponse({"error": "invalid assignment ids requested"}, status_code=403), 0
            published = {k: v for k, v in published.items() if k in ids}
        workflow_state = request.query_params.get("workflow_state")
        graded_since = request.query_params.get("graded_since")  # Canvas ANDs the two, each a strict ">"
        submitted_since = request.query_params.get("submitted_since")
        enrollments = emu.student_enrollments(found["id"])
        rows = []
        for assignment_row in published.values():
            for user_id in emu.assigned_students(assignment_row, enrollments):
                if wanted_students is not None and user_id not in wanted_students:
                    continue
                if members is not None and user_id not in members:
                    continue
                submission = emu.submission(assignment_row, user_id)
                if workflow_state and submission["workflow_state"] != workflow_state:
                    continue
                if graded_since and not (submission.get("graded_at") or "") > graded_since:
                    continue
                if submitted_since and not (submission.get("submitted_at") or "") > submitted_since:
                    continue
                rows.append(submission)
        rows.sort(key=lambda s: s["id"])
        return listing(request, rows, bookmark=True)

    @route("/api/v1/courses/{course_id}/grading_standards", ["GET"])
    async def grading_standards(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        rows = [g for g in emu.state["grading_standards"].values()
                if g["context_type"] == "Course" and g["context_id"] == found["id"]]
        return listing(request, rows)

    @route("/api/sis/courses/{course_id}/assignments", ["GET"])
    async def sis_assignments(request: Request) -> tuple[Response, int]:
        found = emu.course(request.path_params["course_id"])
        if found is None:
            return not_found()
        if found["workflow_state"] != "available":
            return JSONResponse({"code": "unpublished_course",
                                 "error": "Grade data is not available for non-published courses"}, status_code=400), 0
        include_students = "student_overrides" in _list_param(request, "include")
        sections = emu.course_sections(found["id"])
        rows = []
        for a in sorted(emu.state["assignments"].values(), key=lambda a: a["id"]):
            if a["course_id"] != found["id"] or not a.get("published") or not a.get("post_to_sis"):
                continue
            group = emu.state["assignment_groups"].get(str(a.get("assignment_group_id")))
            overrides = a.get("overrides", [])
            section_overrides = {o["course_section_id"]: o for o in overrides if "course_section_id" in o}
            visible = [s for s in sections if not a.get("only_visible_to_overrides") or s["id"] in section_overrides]
            row = {
                "id": a["id"], "created_at": a.get("created_at"), "due_at": a.get("due_at"),
                "unlock_at": a.get("unlock_at"), "lock_at": a.get("lock_at"),
                "points_possible": a.get("points_possible"), "integration_id": a.get("integration_id"),
                "integration_data": a.get("integration_data") or {},
                "include_in_final_grade": not (a.get("omit_from_final_grade") or a.get("grading_type") == "not_graded"),
                "name": a["name"], "course_id": found["id"], "submission_types": a.get("submission_types", []),
                "assignment_group": None if group is None else {
                    k: group[k] for k in ("id", "name", "sis_source_id", "integration_data", "group_weight")
                },
                "sections": [
                    {
                        "id": s["id"], "name": s["name"], "sis_id": s.get("sis_section_id"),
                        "integration_id": s.get("integration_id"),
                        "origin_course": {"id": found["id"], "name": found["name"],
                                          "sis_id": found.get("sis_course_id"), "integration_id": None},
                        **({"override": {"override_title": section_overrides[s["id"]]["title"],
                                         "due_at": section_overrides[s["id"]].get("due_at"),
                                         "unlock_at": None, "lock_at": None}}
                           if s["id"] in section_overrides else {}),
                    }
                    for s in visible
                ],
            }
            if include_students:
                row["user_overrides"] = [
                    {"id": o["id"], "title": o["title"], "due_at": o.get("due_at"), "unlock_at": None, "lock_at": None,
                     "students": [{"user_id": u, "sis_user_id": emu.state["users"][str(u)]["sis_user_id"]}
                                  for u in o["student_ids"]]}
                    for o in overrides if o.get("student_ids")
                ]
            rows.append(row)
        return listing(request, rows)

    async def throttle_control(request: Request) -> Response:
        if request.method == "POST":
            for key, value in (await request.json()).items():
                if key in ("hwm", "outflow", "up_front", "request_cost", "per_item_cost"):
                    setattr(throttle, key, float(value))
            throttle.buckets.clear()
        return JSONResponse(throttle.as_dict())

    async def control_grades(request: Request) -> Response:
        """Grades saved as a teacher saves them in the gradebook (tests: a burst of grade changes), with their events."""
        body = await request.json()
        grader_id = body.get("grader_id")
        graded = 0
        for given in body.get("grades") or []:
            found = emu.course(str(given.get("course_id")))
            row = emu.state["assignments"].get(str(given.get("assignment_id")))
            user_id = int(given.get("user_id", 0))
            if found is None or row is None or row["course_id"] != found["id"] or user_id not in emu.assigned_students(row):
                return JSONResponse({"message": f"no such course, assignment or student: {given}"}, status_code=404)
            old = emu.submission(row, user_id)
            submission = dict(old)
            try:
                _grade(submission, row, {k: v for k, v in given.items()
                                         if k in ("posted_grade", "excused", "late_policy_status")},
                       emu.grading_scheme(row))
            except ValueError:
                return JSONResponse({"message": f"invalid grade {given.get('posted_grade')!r}"}, status_code=400)
            emu.state["submissions"][f"{row['id']}:{user_id}"] = submission
            publisher.emit_grade(found, row, old, submission, origin(request, grader_id))
            graded += 1
        store.dirty = True
        return JSONResponse({"graded": graded})

    lti = LtiPlatform(emu, mark_dirty=lambda: setattr(store, "dirty", True))
    lti_pages, lti_control = lti_routes(emu, lti)  # browser pages: no token, not throttled
    ags_services = ags_routes(emu, lti, mark_dirty=lambda: setattr(store, "dirty", True))  # LTI tokens, not API ones
    live_public, live_control = live_event_routes(publisher)
    app = emulator_app(
        [courses, course, sections, enrollments, assignment_groups, assignment_group, assignments,
         assignment, grade, submit, bulk_submissions, section_submissions, grading_standards, sis_assignments, *lti_pages,
         *ags_services, *live_public],
        emulator=emu, faults=faults, state_file=store,
        stats_extra=lambda: {"throttled": throttle.throttled, "charged": round(throttle.charged, 4)},
        control=[Route("/_emulator/throttle", throttle_control, methods=["GET", "POST"]), *lti_control, *live_control,
                 Route("/_emulator/live_events/grades", control_grades, methods=["POST"])],
        on_shutdown=[publisher.stop],
        throttled_response=(403, THROTTLED_BODY.encode(), {"content-type": "text/plain; charset=utf-8",
                                                           "x-rate-limit-remaining": "0.0"}),
    )
    app.state.faults = faults
    app.state.lti_platform = lti
    app.state.live_events = publisher
    return app


def _new_assignment(assignment_id: int, course_id: int, params: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": assignment_id, "course_id": course_id, "name": "", "description": None,
        "created_at": now_iso(), "updated_at": now_iso(), "due_at": None, "unlock_at": None,
        "lock_at": None, "points_possible": 0.0, "grading_type": "points", "assignment_group_id": None,
        "post_to_sis": False, "published": True, "only_visible_to_overrides": False,
        "omit_from_final_grade": False, "grading_standard_id": None, "position": assignment_id,
        "submission_types": ["online_text_entry"], "integration_id": None, "integration_data": {},
        "sis_assignment_id": None, "due_date_required": False, "max_name_length": 255, "overrides": [],
    }
    _apply_assignment(row, params)
    return row


def _apply_assignment(row: dict[str, Any], params: dict[str, Any]) -> None:
    for key in ASSIGNMENT_FIELDS:
        if key not in params:
            continue
        value = params[key]
        if key in ("post_to_sis", "published", "only_visible_to_overrides", "omit_from_final_grade"):
            value = _bool(value)
        elif key == "points_possible":
            value = None if value in (None, "") else float(value)
        elif key == "assignment_group_id":
            value = None if value in (None, "") else int(value)
        row[key] = value
    if "assignment_overrides" in params:
        row["overrides"] = params["assignment_overrides"]


def _grade(submission: dict[str, Any], assignment: dict[str, Any], params: dict[str, Any],
           scheme: list[tuple[str, float]] | None = None) -> None:
    stamp = now_iso()
    if "excused" in params:
        excused = _bool(params["excused"])
        submission["excused"] = excused
        if excused:
            submission.update(score=None, grade=None, entered_score=None, entered_grade=None,
                              workflow_state="graded", graded_at=stamp, missing=False)
    if "late_policy_status" in params:
        status = params["late_policy_status"] or None
        submission["late_policy_status"] = status
        submission["late"] = status == "late"
        submission["missing"] = status == "missing"
    if "posted_grade" in params:
        posted = params["posted_grade"]
        if posted in (None, ""):
            submission.update(score=None, grade=None, entered_score=None, entered_grade=None,
                              workflow_state="submitted" if submission.get("submitted_at") else "unsubmitted",
                              graded_at=None)
        else:
            score, grade = _score_from_posted(str(posted), assignment, scheme or list(DEFAULT_GRADING_SCHEME))
            submission.update(score=score, grade=grade, entered_score=score, entered_grade=grade,
                              workflow_state="graded", graded_at=stamp, posted_at=stamp,
                              grade_matches_current_submission=True, excused=False)
            if submission.get("late_policy_status") != "missing":
                submission["missing"] = False


def letter_to_percent(letter: str, scheme: list[tuple[str, float]]) -> float | None:
    """Canvas's ``GradingStandard#grade_to_score``: the percent a letter is given."""
    names = [name.lower() for name, _ in scheme]
    wanted = letter.strip().lower()
    if wanted not in names:
        return None
    index = names.index(wanted)
    if index == 0:
        return 100.0
    above = scheme[index - 1][1]
    step = 1.0 if abs(scheme[index][1] - above) >= 0.01 else 0.1
    return round(above * 100.0 - step, 4)


def percent_to_letter(percent: float, scheme: list[tuple[str, float]]) -> str:
    """Canvas's ``score_to_grade``: the highest band whose bottom the percent reaches, else the lowest."""
    for name, bottom in scheme:
        if percent >= bottom * 100.0:
            return name
    return scheme[-1][0]


def _score_from_posted(posted: str, assignment: dict[str, Any],
                       scheme: list[tuple[str, float]]) -> tuple[float | None, str]:
    possible = assignment.get("points_possible") or 0.0
    grading = assignment.get("grading_type")
    text = posted.strip()
    if grading == "pass_fail":
        complete = text.lower() in ("complete", "pass")
        return (possible if complete else 0.0), ("complete" if complete else "incomplete")
    if grading == "letter_grade":
        percent = letter_to_percent(text, scheme)
        if percent is not None:
            return round(percent / 100.0 * possible, 2), next(n for n, _ in scheme if n.lower() == text.lower())
        score = (float(text.rstrip("%")) / 100.0 * possible) if text.endswith("%") else float(text)
        return round(score, 2), percent_to_letter(score / possible * 100.0 if possible else 0.0, scheme)
    if text.endswith("%"):
        percent = float(text.rstrip("%"))
        return round(percent / 100.0 * possible, 2), f"{percent:g}%"
    score = float(text)
    if grading == "percent":
        return score, f"{round(score / possible * 100, 2) if possible else 0:g}%"
    return score, f"{score:g}"
