"""A local courseware emulator (S4): a CourseArc-like course of pages and activities.

Seed 002 describes a courseware tool whose course score (points for completed pages plus
activity scores) is passed back to a gradebook. CourseArc's own API is not public, so
this is a small REST API of our own design, written down here as the contract the
connector (:mod:`passback.connectors.courseware`) speaks. Like the course it models, it
stores what students did and what things are worth; it never stores a course score (the
connector computes it, :mod:`passback.convert.courseware`).

Auth
    ``Authorization: Bearer <token>``; tokens live in ``state["tokens"]`` as
    ``{token: {"role": "admin"}}`` (every course) or ``{"role": "instructor",
    "user_id": n}`` (the courses that user teaches). A missing or unknown token is 401
    ``{"error": {"code": "unauthorized", "message": "Missing or invalid API token."}}``
    with ``WWW-Authenticate: Bearer realm="courseware"``; a course the token may not see
    is 404 like one that does not exist.

Errors
    Every refusal is ``{"error": {"code", "message"[, "field"]}}``: 404 ``not_found``,
    422 ``invalid`` (with the ``field``), 429 ``rate_limited`` (the fault injector's
    throttled answer, with ``Retry-After``).

Paging
    Every listing takes ``limit`` (default 50, clamped to 1..100) and ``offset`` and
    answers ``{"data": [...], "paging": {"offset", "limit", "total", "next"}}``, where
    ``next`` is the absolute URL of the next page (the query kept) or null on the last.

Reads (``/api/v1``)
    ``GET /courses``; ``GET /courses/{id}`` -> ``{id, title, code, sis_course_id,
    gradebook_title, passback_mode, time_zone, due_date, term: {name, start_date,
    end_date}, sections: [{id, name, sis_id}], html_url}``;
    ``GET /courses/{id}/pages`` -> ``{id, title, position, points}`` (points for
    completing the page, possibly 0); ``GET /courses/{id}/activities`` -> ``{id, page_id,
    title, kind, points_possible}`` (``kind``: quiz, poll, assignment, ...);
    ``GET /courses/{id}/enrollments?role=student|instructor`` -> ``{id, role, status,
    section_id, user: {id, name, sortable_name, sis_id}}``;
    ``GET /courses/{id}/progress`` (every enrolled student, one paged listing, never a
    request per student) and ``GET /courses/{id}/students/{user_id}/progress`` ->
    ``{user_id, pages_completed: [{page_id, completed_at}], attempts: [{id,
    activity_id, attempt, score, points_possible_at_attempt, submitted_at}]}``.

Writes an instructor makes
    ``PUT /courses/{id}/pages/{page_id}/points`` ``{"points": n}``;
    ``PUT /courses/{id}/activities/{activity_id}/points`` ``{"points_possible": n}``;
    ``PUT /courses/{id}/settings`` ``{"passback_mode": "automatic"|"manual",
    "gradebook_title": "..."}``. Points are numbers of 0 or more, else 422. Changing an
    activity's points never touches its attempts: a quiz attempt keeps the ``score`` and
    ``points_possible_at_attempt`` it was graded with (seed 002: quizzes are not regraded).

Writes a student makes (any valid token, for the student the path names: the emulator does
not model a student's own sign-in)
    ``POST /courses/{id}/students/{user_id}/completions`` ``{"page_id"}`` (idempotent:
    a page completed twice is completed once, 200 either way);
    ``POST /courses/{id}/students/{user_id}/attempts`` ``{"activity_id", "score"}``: a new
    attempt, numbered after the student's last, graded at attempt time against the
    activity's points then (``score`` above them is 422; null leaves it unscored).

An instructor adds an activity with ``POST /courses/{id}/activities`` ``{"page_id", "title",
"kind", "points_possible"}`` (201, the activity).

Change events (:mod:`passback.emulators.courseware_events`): an attempt or a first page
completion emits ``score_changed``, an activity added or its points changed
``activity_changed``, a page's points changed ``page_changed``, each posted (HMAC-signed, in
the background) to the URLs subscribed with ``POST /_emulator/events/subscriptions``.

Control (never faulted): ``/_emulator/stats``, ``/_emulator/faults``,
``/_emulator/state``, ``/_emulator/writes`` (every write accepted; in process
``app.state.writes`` and ``app.state.faults``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passback.emulators.app import emulator_app
from passback.emulators.courseware_events import (
    ACTIVITY_CHANGED,
    PAGE_CHANGED,
    SCORE_CHANGED,
    CoursewareEventsPublisher,
)
from passback.emulators.courseware_events import event_routes as courseware_event_routes
from passback.emulators.faults import FaultConfig
from passback.emulators.state import StateFile

DEFAULT_LIMIT, MAX_LIMIT = 50, 100
PASSBACK_MODES = ("automatic", "manual")
THROTTLED = (429, json.dumps({"error": {"code": "rate_limited", "message": "Too many requests; slow down."}}).encode(),
             {"content-type": "application/json", "retry-after": "1"})

Handler = Callable[[Request], Awaitable[Response]]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_state() -> dict[str, Any]:
    return {"next_id": 1000, "tokens": {}, "users": {}, "courses": {}, "pages": {}, "activities": {},
            "enrollments": {}, "completions": {}, "attempts": {}}


def error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def not_found(what: str) -> JSONResponse:
    return error(404, "not_found", f"No such {what}, or this token may not see it.")


class CoursewareEmulator:
    """State and rules of the emulated courseware; the routes below are thin."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.requests: Counter[str] = Counter()

    def new_id(self) -> int:
        self.state["next_id"] += 1
        return int(self.state["next_id"])

    # --- visibility -----------------------------------------------------------------
    def visible_courses(self, token: dict[str, Any]) -> list[dict[str, Any]]:
        courses = sorted(self.state["courses"].values(), key=lambda c: c["id"])
        if token.get("role") == "admin":
            return courses
        taught = {e["course_id"] for e in self.state["enrollments"].values()
                  if e["user_id"] == token.get("user_id") and e["role"] == "instructor"}
        return [c for c in courses if c["id"] in taught]

    def course(self, token: dict[str, Any], course_id: str) -> dict[str, Any] | None:
        found = self.state["courses"].get(course_id)
        if found is None or found not in self.visible_courses(token):
            return None
        return found

    # --- the course's parts ---------------------------------------------------------
    def pages(self, course_id: int) -> list[dict[str, Any]]:
        return sorted((p for p in self.state["pages"].values() if p["course_id"] == course_id),
                      key=lambda p: (p["position"], p["id"]))

    def activities(self, course_id: int) -> list[dict[str, Any]]:
        order = {p["id"]: p["position"] for p in self.pages(course_id)}
        return sorted((a for a in self.state["activities"].values() if a["course_id"] == course_id),
                      key=lambda a: (order.get(a["page_id"], 0), a["id"]))

    def enrollments(self, course_id: int, role: str | None = None) -> list[dict[str, Any]]:
        return sorted((e for e in self.state["enrollments"].values()
                       if e["course_id"] == course_id and (role is None or e["role"] == role)),
                      key=lambda e: e["id"])

    def is_student(self, course_id: int, user_id: int) -> bool:
        return any(e["user_id"] == user_id and e["status"] == "active" for e in self.enrollments(course_id, "student"))

    def progress(self, course_id: int, user_id: int) -> dict[str, Any]:
        page_ids = {p["id"] for p in self.pages(course_id)}
        activity_ids = {a["id"] for a in self.activities(course_id)}
        completed = sorted((c for c in self.state["completions"].values()
                            if c["user_id"] == user_id and c["page_id"] in page_ids), key=lambda c: c["page_id"])
        attempts = sorted((a for a in self.state["attempts"].values()
                           if a["user_id"] == user_id and a["activity_id"] in activity_ids),
                          key=lambda a: (a["activity_id"], a["attempt"]))
        return {"user_id": user_id,
                "pages_completed": [{"page_id": c["page_id"], "completed_at": c["completed_at"]} for c in completed],
                "attempts": [{k: a[k] for k in ("id", "activity_id", "attempt", "score", "points_possible_at_attempt",
                                                "submitted_at")} for a in attempts]}

    # --- what students do -----------------------------------------------------------
    def complete_page(self, page: dict[str, Any], user_id: int, at: str | None = None) -> dict[str, Any]:
        key = f"{page['id']}:{user_id}"
        held = self.state["completions"].get(key)
        if held is None:
            held = {"page_id": page["id"], "user_id": user_id, "completed_at": at or now_iso()}
            self.state["completions"][key] = held
        return held

    def attempt(self, activity: dict[str, Any], user_id: int, score: float | None,
                at: str | None = None) -> dict[str, Any]:
        """A new attempt, graded now against what the activity is worth now."""
        number = 1 + max((a["attempt"] for a in self.state["attempts"].values()
                          if a["activity_id"] == activity["id"] and a["user_id"] == user_id), default=0)
        attempt_id = self.new_id()
        row = {"id": attempt_id, "activity_id": activity["id"], "user_id": user_id, "attempt": number,
               "score": score, "points_possible_at_attempt": activity["points_possible"],
               "submitted_at": at or now_iso()}
        self.state["attempts"][str(attempt_id)] = row
        return row


def _limit_offset(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        return DEFAULT_LIMIT, 0
    return min(max(limit, 1), MAX_LIMIT), max(offset, 0)


def listing(request: Request, rows: list[Any]) -> JSONResponse:
    limit, offset = _limit_offset(request)
    chunk = rows[offset:offset + limit]
    following = None
    if offset + limit < len(rows):
        kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "offset")]
        query = urlencode(kept + [("limit", str(limit)), ("offset", str(offset + limit))])
        following = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{query}"
    return JSONResponse({"data": chunk, "paging": {"offset": offset, "limit": limit, "total": len(rows),
                                                    "next": following}})


def _points(body: Any, name: str) -> float | None:
    """A point value from a body: a number of 0 or more, else None (the caller answers 422)."""
    value = body.get(name) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def create_app(state: dict[str, Any] | None = None, faults: FaultConfig | None = None,
               state_path: Path | None = None) -> Starlette:
    store = StateFile(state_path)
    emu = CoursewareEmulator(state or store.load() or empty_state())
    faults = faults or FaultConfig()
    events = CoursewareEventsPublisher(emu.state, lambda: setattr(store, "dirty", True))

    def route(path: str, methods: list[str]) -> Callable[[Callable[..., Awaitable[Response]]], Route]:
        """A token-checked endpoint; the handler gets the request, the token's row and the course (if named)."""
        def wrap(handler: Callable[..., Awaitable[Response]]) -> Route:
            async def endpoint(request: Request) -> Response:
                emu.requests[f"{request.method} {path}"] += 1
                header = request.headers.get("authorization", "")
                token = emu.state["tokens"].get(header.removeprefix("Bearer ").strip()) \
                    if header.startswith("Bearer ") else None
                if token is None:
                    response = error(401, "unauthorized", "Missing or invalid API token.")
                    response.headers["WWW-Authenticate"] = 'Bearer realm="courseware"'
                    return response
                course = None
                if "course_id" in request.path_params:
                    course = emu.course(token, str(request.path_params["course_id"]))
                    if course is None:
                        return not_found("course")
                response = await handler(request, token, course)
                if request.method != "GET" and response.status_code < 400:
                    store.dirty = True
                return response

            return Route(path, endpoint, methods=methods)

        return wrap

    def course_json(request: Request, course: dict[str, Any]) -> dict[str, Any]:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return {**course, "html_url": f"{base}/courses/{course['id']}/progress"}

    @route("/api/v1/courses", ["GET"])
    async def courses(request: Request, token: dict[str, Any], course: None) -> Response:
        return listing(request, [course_json(request, c) for c in emu.visible_courses(token)])

    @route("/api/v1/courses/{course_id}", ["GET"])
    async def one_course(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        return JSONResponse(course_json(request, course))

    @route("/api/v1/courses/{course_id}/settings", ["PUT"])
    async def settings(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return error(422, "invalid", "The body must be a JSON object.")
        if "passback_mode" in body:
            if body["passback_mode"] not in PASSBACK_MODES:
                return error(422, "invalid", "passback_mode must be automatic or manual.", "passback_mode")
            course["passback_mode"] = body["passback_mode"]
        if "gradebook_title" in body:
            title = body["gradebook_title"]
            if not isinstance(title, str) or not title.strip():
                return error(422, "invalid", "gradebook_title must be a non-empty text.", "gradebook_title")
            course["gradebook_title"] = title.strip()
        return JSONResponse(course_json(request, course))

    @route("/api/v1/courses/{course_id}/pages", ["GET"])
    async def pages(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        return listing(request, [{k: p[k] for k in ("id", "title", "position", "points")}
                                 for p in emu.pages(course["id"])])

    @route("/api/v1/courses/{course_id}/pages/{page_id}/points", ["PUT"])
    async def page_points(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        page = emu.state["pages"].get(str(request.path_params["page_id"]))
        if page is None or page["course_id"] != course["id"]:
            return not_found("page")
        points = _points(await _json(request), "points")
        if points is None:
            return error(422, "invalid", "points must be a number of 0 or more.", "points")
        page["points"] = points
        events.emit(PAGE_CHANGED, course["id"], page_id=page["id"])
        return JSONResponse({k: page[k] for k in ("id", "title", "position", "points")})

    @route("/api/v1/courses/{course_id}/activities", ["GET", "POST"])
    async def activities(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        if request.method == "POST":
            return add_activity(course, await _json(request))
        return listing(request, [{k: a[k] for k in ("id", "page_id", "title", "kind", "points_possible")}
                                 for a in emu.activities(course["id"])])

    def add_activity(course: dict[str, Any], body: Any) -> Response:
        if not isinstance(body, dict):
            return error(422, "invalid", "The body must be a JSON object.")
        page = emu.state["pages"].get(str(body.get("page_id")))
        if page is None or page["course_id"] != course["id"]:
            return error(422, "invalid", "page_id must name a page of this course.", "page_id")
        points = _points(body, "points_possible")
        if points is None:
            return error(422, "invalid", "points_possible must be a number of 0 or more.", "points_possible")
        activity_id = emu.new_id()
        row = {"id": activity_id, "course_id": course["id"], "page_id": page["id"],
               "title": str(body.get("title") or f"Activity {activity_id}"), "kind": str(body.get("kind") or "quiz"),
               "points_possible": points}
        emu.state["activities"][str(activity_id)] = row
        events.emit(ACTIVITY_CHANGED, course["id"], activity_id=activity_id, page_id=page["id"])
        return JSONResponse({k: row[k] for k in ("id", "page_id", "title", "kind", "points_possible")},
                            status_code=201)

    @route("/api/v1/courses/{course_id}/activities/{activity_id}/points", ["PUT"])
    async def activity_points(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        activity = emu.state["activities"].get(str(request.path_params["activity_id"]))
        if activity is None or activity["course_id"] != course["id"]:
            return not_found("activity")
        points = _points(await _json(request), "points_possible")
        if points is None:
            return error(422, "invalid", "points_possible must be a number of 0 or more.", "points_possible")
        activity["points_possible"] = points  # attempts keep what they were graded with
        events.emit(ACTIVITY_CHANGED, course["id"], activity_id=activity["id"], page_id=activity["page_id"])
        return JSONResponse({k: activity[k] for k in ("id", "page_id", "title", "kind", "points_possible")})

    @route("/api/v1/courses/{course_id}/enrollments", ["GET"])
    async def enrollments(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        role = request.query_params.get("role")
        rows = [{"id": e["id"], "role": e["role"], "status": e["status"], "section_id": e["section_id"],
                 "user": emu.state["users"][str(e["user_id"])]} for e in emu.enrollments(course["id"], role)]
        return listing(request, rows)

    @route("/api/v1/courses/{course_id}/progress", ["GET"])
    async def progress(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        students = sorted({e["user_id"] for e in emu.enrollments(course["id"], "student") if e["status"] == "active"})
        return listing(request, [emu.progress(course["id"], user_id) for user_id in students])

    def student_of(request: Request, course: dict[str, Any]) -> int | None:
        try:
            user_id = int(request.path_params["user_id"])
        except ValueError:
            return None
        return user_id if emu.is_student(course["id"], user_id) else None

    @route("/api/v1/courses/{course_id}/students/{user_id}/progress", ["GET"])
    async def student_progress(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        user_id = student_of(request, course)
        if user_id is None:
            return not_found("student")
        return JSONResponse(emu.progress(course["id"], user_id))

    @route("/api/v1/courses/{course_id}/students/{user_id}/completions", ["POST"])
    async def completions(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        user_id = student_of(request, course)
        if user_id is None:
            return not_found("student")
        body = await _json(request)
        page = emu.state["pages"].get(str((body or {}).get("page_id"))) if isinstance(body, dict) else None
        if page is None or page["course_id"] != course["id"]:
            return error(422, "invalid", "page_id must name a page of this course.", "page_id")
        first = f"{page['id']}:{user_id}" not in emu.state["completions"]
        held = emu.complete_page(page, user_id)
        if first:
            events.emit(SCORE_CHANGED, course["id"], student_id=user_id, page_id=page["id"])
        return JSONResponse(held)

    @route("/api/v1/courses/{course_id}/students/{user_id}/attempts", ["POST"])
    async def attempts(request: Request, token: dict[str, Any], course: dict[str, Any]) -> Response:
        user_id = student_of(request, course)
        if user_id is None:
            return not_found("student")
        body = await _json(request)
        if not isinstance(body, dict):
            return error(422, "invalid", "The body must be a JSON object.")
        activity = emu.state["activities"].get(str(body.get("activity_id")))
        if activity is None or activity["course_id"] != course["id"]:
            return error(422, "invalid", "activity_id must name an activity of this course.", "activity_id")
        score = None
        if body.get("score") is not None:
            score = _points(body, "score")
            if score is None or score > activity["points_possible"]:
                return error(422, "invalid", "score must be a number from 0 to the activity's points.", "score")
        row = emu.attempt(activity, user_id, score)
        events.emit(SCORE_CHANGED, course["id"], student_id=user_id, activity_id=activity["id"], attempt_id=row["id"])
        return JSONResponse(row, status_code=201)

    app = emulator_app(
        [courses, one_course, settings, pages, page_points, activities, activity_points, enrollments, progress,
         student_progress, completions, attempts],
        emulator=emu, faults=faults, state_file=store, throttled_response=THROTTLED,
        control=courseware_event_routes(events), on_shutdown=[events.stop],
    )
    app.state.faults = faults
    app.state.events = events
    return app
