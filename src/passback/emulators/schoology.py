"""A local Schoology emulator: the REST API v1 a teacher-gradebook reader uses.

Contract (Schoology's REST API v1 documentation):

* Auth: two-legged OAuth 1.0a in the ``Authorization: OAuth realm="Schoology API", ...``
  header, PLAINTEXT (signature ``secret&``, percent-encoded or not) or HMAC-SHA1 over the
  standard base string. ``oauth_token`` must be present and, two-legged, empty
  (``oauth_token=""``, as the Authentication page says); a header without it is refused
  with 401 and the text of Schoology's OAuth library, ``Can't verify request, missing
  oauth_consumer_key or oauth_token``. A reused timestamp and nonce is refused with 401
  and the text ``Duplicate timestamp/nonce combination, possible replay attack.  Request
  rejected.``; a bad key or signature with 401 and a short text.
* ``GET /v1/users/me`` answers 303 to ``/v1/users/{uid}`` (a client must sign the
  follow-up afresh).
* Lists page with ``start`` and ``limit`` (default 20, clamped to 200) and carry
  ``total`` and ``links.self``, plus ``links.next`` only while more rows remain. Wrapper
  keys are singular nouns holding arrays (``section``, ``enrollment``, ``assignment``,
  ``grading_category``, ``grading_period``, ``discussion``); grades are
  ``{"grades": {"grade": [...]}}``. Ids and counts come as strings where Schoology sends
  strings.
* Gradebook columns: assignment objects whose read-only ``type`` is ``assignment``,
  ``assessment`` (tests and quizzes) or ``discussion``. ``/assignments`` lists the
  assignments and assessments ("containers for coursework and tests/quizzes");
  ``/grade_items`` lists every column, graded discussions included; ``/discussions``
  lists the discussion threads, a graded one carrying ``grade_item_id`` (its column's id,
  which its grades carry as ``assignment_id``) while its column's ``grade_item_id`` is the
  thread's id. :func:`add_grade_item` adds a column of any type (the API creates only
  plain assignments: ``type`` is not accepted in POST/PUT).
* Grading categories: ``POST /sections/{id}/grading_categories`` with
  ``{"grading_categories": {"grading_category": [...]}}`` answers 200 with
  ``{"grading_category": [{"id": "...", "response_code": 200, "title": ...}, ...]}``.
* Grades: ``exception`` 0 none, 1 excused, 2 incomplete, the only codes Schoology
  documents; a grade with an exception above 0 is null. A PUT with any other code is
  refused for that row (``response_code`` 400); the emulator invents no other code, but
  a state loaded from elsewhere may hold one, and is served as it is (a reader must
  report it, not guess). Each grade carries ``type`` (``assignment`` or ``discussion``)
  and ``location``.
* Rate limit: ``rate_limit`` requests per 5 seconds per consumer key (default 50), then
  429. 403 and 404 answer with an empty body.
* Every write the emulator accepted (status below 400) is logged in
  ``SchoologyEmulator.writes`` as ``(method, path, body)``: the check that a create was
  sent once.

Control (never faulted): ``/_emulator/stats``, ``/_emulator/faults``, ``/_emulator/state``.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from authlib.oauth1.rfc5849.signature import construct_base_string, hmac_sha1_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from passback.emulators.app import emulator_app
from passback.emulators.faults import FaultConfig
from passback.emulators.state import StateFile

REPLAY_TEXT = "Duplicate timestamp/nonce combination, possible replay attack.  Request rejected."
MISSING_TOKEN_TEXT = "Can't verify request, missing oauth_consumer_key or oauth_token"
DEFAULT_LIMIT, MAX_LIMIT = 20, 200
EXCEPTION_EXCUSED, EXCEPTION_INCOMPLETE = 1, 2
DOCUMENTED_EXCEPTIONS = frozenset({0, EXCEPTION_EXCUSED, EXCEPTION_INCOMPLETE})
GRADE_ITEM_TYPES = ("assignment", "assessment", "discussion")


def empty_state() -> dict[str, Any]:
    return {"next_id": 1000, "consumers": {}, "users": {}, "sections": {}, "enrollments": {},
            "grading_categories": {}, "grading_periods": {}, "assignments": {}, "grades": {}}


def _oauth_params(header: str) -> dict[str, str] | None:
    if not header.startswith("OAuth "):
        return None
    return {k: unquote(v) for k, v in re.findall(r'(\w+)="([^"]*)"', header[6:])}


class SchoologyEmulator:
    def __init__(self, state: dict[str, Any], rate_limit: int = 50) -> None:
        self.state = state
        self.rate_limit = rate_limit
        self.requests: Counter[str] = Counter()
        self.seen: set[tuple[str, str, str]] = set()
        self.windows: dict[str, deque[float]] = {}
        self.rate_limited = 0
        self.writes: list[tuple[str, str, Any]] = []  # (method, path, body) of every write accepted

    def new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def authenticate(self, request: Request) -> tuple[str | None, Response | None]:
        params = _oauth_params(request.headers.get("authorization", ""))
        if params is not None and ("oauth_token" not in params or "oauth_consumer_key" not in params):
            return None, PlainTextResponse(MISSING_TOKEN_TEXT, status_code=401)
        consumer = self.state["consumers"].get((params or {}).get("oauth_consumer_key", ""))
        if params is None or consumer is None:
            return None, PlainTextResponse("Invalid OAuth consumer key", status_code=401)
        if params["oauth_token"]:  # two-legged keys have no token; a three-legged one is unknown here
            return None, PlainTextResponse(f'The consumer_key "{params["oauth_consumer_key"]}" token '
                                           f'"{params["oauth_token"]}" combination does not exist or is not enabled.',
                                           status_code=401)
        replay_key = (params["oauth_consumer_key"], params.get("oauth_timestamp", ""), params.get("oauth_nonce", ""))
        if replay_key in self.seen:
            return None, PlainTextResponse(REPLAY_TEXT, status_code=401)
        method = params.get("oauth_signature_method", "")
        secret = consumer["secret"]
        if method == "PLAINTEXT":
            valid = params.get("oauth_signature") in (f"{secret}&", f"{secret}%26")
        elif method == "HMAC-SHA1":
            signed = [(k, v) for k, v in params.items() if k not in ("realm", "oauth_signature")]
            signed += list(parse_qsl(request.url.query, keep_blank_values=True))
            uri = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
            base = construct_base_string(request.method, uri, signed)
            valid = hmac_sha1_signature(base, secret, "") == params.get("oauth_signature")
        else:
            valid = False
        if not valid:
            return None, PlainTextResponse("Invalid OAuth signature", status_code=401)
        self.seen.add(replay_key)
        window = self.windows.setdefault(params["oauth_consumer_key"], deque())
        now = time.monotonic()
        while window and now - window[0] > 5.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            self.rate_limited += 1
            return None, PlainTextResponse("Rate limit exceeded", status_code=429)
        window.append(now)
        return str(consumer["uid"]), None

    def section(self, section_id: str) -> dict[str, Any] | None:
        return self.state["sections"].get(section_id)


def _window(request: Request, count: int) -> tuple[int, int, dict[str, str]]:
    """The page asked for (start, limit) and its links: ``next`` only while rows remain."""
    start = max(int(request.query_params.get("start", 0)), 0)
    limit = min(max(int(request.query_params.get("limit", DEFAULT_LIMIT)), 1), MAX_LIMIT)
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
    others = [(k, v) for k, v in request.query_params.multi_items() if k not in ("start", "limit")]
    links = {"self": f"{base}?{urlencode(others + [('start', start), ('limit', limit)])}"}
    if start + limit < count:
        links["next"] = f"{base}?{urlencode(others + [('start', start + limit), ('limit', limit)])}"
    return start, limit, links


def _page(request: Request, rows: list[Any], wrapper: str, total_as_string: bool = True) -> JSONResponse:
    start, limit, links = _window(request, len(rows))
    total: Any = str(len(rows)) if total_as_string else len(rows)
    return JSONResponse({wrapper: rows[start : start + limit], "total": total, "links": links})


def _public_section(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "teacher_uid"}


def create_app(state: dict[str, Any] | None = None, faults: FaultConfig | None = None,
               state_path: Path | None = None, rate_limit: int = 50) -> Starlette:
    store = StateFile(state_path)
    emu = SchoologyEmulator(state or store.load() or empty_state(), rate_limit=rate_limit)
    faults = faults or FaultConfig()

    def route(path: str, methods: list[str]):  # type: ignore[no-untyped-def]
        def wrap(handler):  # type: ignore[no-untyped-def]
            async def endpoint(request: Request) -> Response:
                emu.requests[f"{request.method} {path}"] += 1
                uid, denied = emu.authenticate(request)
                if denied is not None:
                    return denied
                response = await handler(request, uid)
                if request.method != "GET":
                    store.dirty = True
                    if response.status_code < 400:
                        emu.writes.append((request.method, request.url.path, await _json_body(request)))
                return response

            return Route(path, endpoint, methods=methods)

        return wrap

    def owned(request: Request, uid: str) -> dict[str, Any] | None:
        section = emu.section(request.path_params["section_id"])
        if section is None or str(section["teacher_uid"]) != uid:
            return None
        return section

    empty_403 = Response(status_code=403)

    @route("/v1/users/me", ["GET"])
    async def me(request: Request, uid: str) -> Response:
        return RedirectResponse(f"{request.base_url}v1/users/{uid}", status_code=303)

    @route("/v1/users/{user_id}", ["GET"])
    async def user(request: Request, uid: str) -> Response:
        found = emu.state["users"].get(request.path_params["user_id"])
        return JSONResponse(found) if found else Response(status_code=404)

    @route("/v1/users/{user_id}/sections", ["GET"])
    async def user_sections(request: Request, uid: str) -> Response:
        if request.path_params["user_id"] != uid:
            return Response(status_code=403)
        rows = [_public_section(s) | {"admin": 1} for s in emu.state["sections"].values() if str(s["teacher_uid"]) == uid]
        return _page(request, sorted(rows, key=lambda s: int(s["id"])), "section")

    @route("/v1/sections/{section_id}", ["GET"])
    async def section(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        return JSONResponse(_public_section(found)) if found else Response(status_code=404)

    @route("/v1/sections/{section_id}/enrollments", ["GET"])
    async def enrollments(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        rows = sorted((e for e in emu.state["enrollments"].values() if e["section_id"] == found["id"]),
                      key=lambda e: int(e["id"]))
        public = []
        for e in rows:
            person = emu.state["users"][str(e["uid"])]
            public.append({"id": e["id"], "uid": str(e["uid"]), "school_uid": person["school_uid"],
                           "name_first": person["name_first"], "name_last": person["name_last"],
                           "name_display": f"{person['name_first']} {person['name_last']}",
                           "admin": e["admin"], "status": e["status"]})
        return _page(request, public, "enrollment")

    @route("/v1/sections/{section_id}/grading_categories", ["GET", "POST"])
    async def grading_categories(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        if request.method == "POST":
            body = await request.json()
            rows = (body.get("grading_categories") or {}).get("grading_category") or []
            return JSONResponse({"grading_category": [_create_category(emu, found["id"], row) for row in rows]})
        rows = [{k: v for k, v in c.items() if k != "section_id"}
                for c in emu.state["grading_categories"].values() if c["section_id"] == found["id"]]
        return JSONResponse({"grading_category": sorted(rows, key=lambda c: c["id"])})

    @route("/v1/sections/{section_id}/grading_categories/{category_id}", ["PUT", "DELETE"])
    async def grading_category(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        category = emu.state["grading_categories"].get(request.path_params["category_id"])
        if found is None or category is None or category["section_id"] != found["id"]:
            return Response(status_code=404)
        if request.method == "DELETE":
            del emu.state["grading_categories"][str(category["id"])]
        else:
            body = await request.json()
            if "title" in body:
                category["title"] = body["title"]
        return Response(status_code=204)

    @route("/v1/sections/{section_id}/grading_periods", ["GET"])
    async def grading_periods(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        rows = [emu.state["grading_periods"][str(p)] for p in found["grading_periods"]]
        return JSONResponse({"grading_period": rows, "links": {"self": str(request.url)}})

    @route("/v1/sections/{section_id}/assignments", ["GET", "POST"])
    async def assignments(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        if request.method == "POST":
            body = await request.json()
            assignment_id = emu.new_id()
            row = _assignment_row(assignment_id, found["id"], body, str(request.base_url))
            emu.state["assignments"][str(assignment_id)] = row
            return JSONResponse(_public_assignment(row), status_code=201)
        rows = [a for a in _columns(emu, found["id"]) if a.get("type", "assignment") != "discussion"]
        return _page(request, [_public_assignment(a) for a in rows], "assignment", total_as_string=False)

    @route("/v1/sections/{section_id}/grade_items", ["GET"])
    async def grade_items(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        rows = [_public_assignment(a) for a in _columns(emu, found["id"])]
        return _page(request, rows, "assignment", total_as_string=False)

    @route("/v1/sections/{section_id}/discussions", ["GET"])
    async def discussions(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        rows = [_public_discussion(a) for a in _columns(emu, found["id"]) if a.get("type") == "discussion"]
        return _page(request, rows, "discussion", total_as_string=False)

    @route("/v1/sections/{section_id}/discussions/{discussion_id}", ["GET", "PUT"])
    async def discussion(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        wanted = request.path_params["discussion_id"]
        row = next((a for a in _columns(emu, found["id"]) if a.get("type") == "discussion"
                    and str(a["grade_item_id"]) == wanted), None) if found else None
        if row is None:
            return Response(status_code=404)
        if request.method == "GET":
            return JSONResponse(_public_discussion(row))
        _apply(row, await request.json())
        return Response(status_code=204)

    @route("/v1/sections/{section_id}/assignments/{assignment_id}", ["GET", "PUT", "DELETE"])
    async def assignment(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        row = emu.state["assignments"].get(request.path_params["assignment_id"])
        if found is None or row is None or row["section_id"] != found["id"] or row.get("type") == "discussion":
            return Response(status_code=404)
        if request.method == "GET":
            return JSONResponse(_public_assignment(row))
        if request.method == "DELETE":
            del emu.state["assignments"][str(row["id"])]
            for key in [k for k in emu.state["grades"] if k.startswith(f"{row['id']}:")]:
                del emu.state["grades"][key]
            return Response(status_code=204)
        _apply(row, await request.json())
        return Response(status_code=204)

    @route("/v1/sections/{section_id}/grades", ["GET", "PUT"])
    async def grades(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        if found is None:
            return empty_403
        if request.method == "PUT":
            body = await request.json()
            rows = (body.get("grades") or {}).get("grade") or []
            return JSONResponse({"grades": {"grade": [_put_grade(emu, row) for row in rows]}})
        wanted_assignment = request.query_params.get("assignment_id")
        assignments_here = {a["id"]: a for a in _columns(emu, found["id"])}
        rows = []
        for grade in sorted(emu.state["grades"].values(), key=lambda g: (g["assignment_id"], g["enrollment_id"])):
            assignment_row = assignments_here.get(grade["assignment_id"])
            if assignment_row is None or (wanted_assignment and str(grade["assignment_id"]) != wanted_assignment):
                continue
            rows.append(_public_grade(grade, assignment_row, str(request.base_url)))
        start, limit, links = _window(request, len(rows))
        return JSONResponse({"grades": {"grade": rows[start : start + limit]},
                             "period": [{"period_id": f"p{p}", "period_title": emu.state["grading_periods"][str(p)]["title"],
                                         "weight": "100.00"} for p in found["grading_periods"]],
                             "total": len(rows), "links": links})

    def set_rate_limit(body: dict[str, Any]) -> None:
        if "rate_limit" in body:
            emu.rate_limit = int(body["rate_limit"])

    return emulator_app(
        [me, user, user_sections, section, enrollments, grading_categories, grading_category,
         grading_periods, assignments, grade_items, discussions, discussion, assignment, grades],
        emulator=emu, faults=faults, state_file=store,
        stats_extra=lambda: {"rate_limited": emu.rate_limited, "rate_limit": emu.rate_limit, "writes": len(emu.writes)},
        on_faults=set_rate_limit,
        throttled_response=(429, b"Rate limit exceeded", {"content-type": "text/plain"}),
    )


ASSIGNMENT_FIELDS = ("title", "description", "due", "grading_scale", "grading_period", "grading_category",
                     "max_points", "factor", "is_final", "published", "assignees", "count_in_grade")


def _assignment_row(assignment_id: int, section_id: str, body: dict[str, Any], base: str) -> dict[str, Any]:
    row = {"id": assignment_id, "section_id": section_id, "title": "", "description": "", "due": "",
           "grading_scale": "0", "grading_period": "0", "grading_category": "0", "max_points": "100",
           "factor": "1", "is_final": "0", "show_comments": "0", "grade_stats": "0", "allow_dropbox": "1",
           "allow_discussion": "1", "published": 1, "type": "assignment", "grade_item_id": assignment_id,
           "available": 1, "completed": 0, "count_in_grade": 1, "assignees": [], "grading_group_ids": [],
           "web_url": f"{base}assignment/{assignment_id}", "last_updated": str(int(time.time()))}
    _apply(row, body)
    return row


def _apply(row: dict[str, Any], body: dict[str, Any]) -> None:
    for key in ASSIGNMENT_FIELDS:
        if key in body:
            value = body[key]
            if key in ("max_points", "grading_category", "grading_period", "grading_scale", "factor", "is_final"):
                value = "" if value is None else str(value)
            row[key] = value
    row["last_updated"] = str(int(time.time()))


def _public_assignment(row: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in row.items() if k != "section_id"}
    body["num_assignees"] = len(row.get("assignees") or [])
    return body


def _columns(emu: SchoologyEmulator, section_id: str) -> list[dict[str, Any]]:
    """The section's gradebook columns (every type), in id order."""
    return sorted((a for a in emu.state["assignments"].values() if a["section_id"] == section_id), key=lambda a: a["id"])


def _public_discussion(row: dict[str, Any]) -> dict[str, Any]:
    """A graded discussion thread as ``/discussions`` shows it: the thread's id, its column's id as ``grade_item_id``."""
    return {"id": row["grade_item_id"], "uid": None, "title": row["title"], "body": row.get("description", ""),
            "graded": 1, "due": row.get("due", ""), "grade_item_id": row["id"], "grading_scale": row["grading_scale"],
            "grading_period": row["grading_period"], "grading_category": row["grading_category"],
            "max_points": row["max_points"], "factor": row["factor"], "is_final": row["is_final"],
            "published": row.get("published", 1), "available": 1, "completed": 0, "count_in_grade": 1,
            "collected_only": 0, "auto_publish_grades": 1, "comments_closed": 0, "completion_status": ""}


def _public_grade(grade: dict[str, Any], column: dict[str, Any], base: str) -> dict[str, Any]:
    """A stored grade as ``GET /grades`` shows it, with its column's ``type`` and API ``location``."""
    discussion = column.get("type") == "discussion"
    where = (f"{base}v1/sections/{column['section_id']}/discussions/{column['grade_item_id']}" if discussion
             else f"{base}v1/sections/{column['section_id']}/assignments/{column['id']}")
    return {**grade, "max_points": column["max_points"], "is_final": 0, "comment_status": None, "override": None,
            "calculated_grade": None, "pending": None, "type": "discussion" if discussion else "assignment",
            "location": where, "category_id": int(column["grading_category"] or 0), "scale_id": 0, "scale_type": 0}


def _put_grade(emu: SchoologyEmulator, row: dict[str, Any]) -> dict[str, Any]:
    """Store one grade of a PUT; a row with an exception Schoology does not document is refused, not stored."""
    result = {"assignment_id": row["assignment_id"], "enrollment_id": row["enrollment_id"]}
    try:
        exception = int(row.get("exception") or 0)
    except (TypeError, ValueError):
        exception = -1
    if exception not in DOCUMENTED_EXCEPTIONS:
        return result | {"response_code": 400, "message": f"Invalid exception {row.get('exception')!r}"}
    grade = None if exception else row.get("grade")
    emu.state["grades"][f"{row['assignment_id']}:{row['enrollment_id']}"] = {
        "enrollment_id": int(row["enrollment_id"]), "assignment_id": int(row["assignment_id"]),
        "grade": None if grade in (None, "") else float(grade), "exception": exception,
        "timestamp": int(time.time()), "comment": row.get("comment", ""),
    }
    return result | {"response_code": 200}


def _create_category(emu: SchoologyEmulator, section_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """One row of a bulk create, answered as the documentation shows it (string id, ``response_code`` 200)."""
    if not row.get("title"):
        return {"response_code": 400, "message": "Title is required"}
    category_id = emu.new_id()
    stored = {"id": category_id, "section_id": section_id, "title": row["title"], "delta": 0,
              "calculation_type": int(row.get("calculation_type", 2)), "weight": int(row.get("weight", 0)),
              "drop_lowest": int(row.get("drop_lowest", 0)), "default_max_points": 100, "default_grading_scale": 0}
    emu.state["grading_categories"][str(category_id)] = stored
    return {"id": str(category_id), "response_code": 200} | {k: v for k, v in stored.items() if k not in ("id", "section_id")}


async def _json_body(request: Request) -> Any:
    """A write's body for the write log: its JSON, or None when it has none."""
    raw = await request.body()
    if not raw:
        return None
    try:
        return await request.json()
    except ValueError:
        return raw.decode(errors="replace")


def add_grade_item(state: dict[str, Any], section_id: str, kind: str, title: str, **fields: Any) -> dict[str, Any]:
    """Add a gradebook column of ``kind`` (assignment, assessment or discussion) straight into a state.

    Schoology's API creates only plain assignments (``type`` is read-only), so tests and
    sandboxes put assessments and graded discussions in this way. A discussion gets a
    thread id of its own as ``grade_item_id``; its grades carry the column's ``id``.
    """
    if kind not in GRADE_ITEM_TYPES:
        raise ValueError(f"Unknown grade item type {kind!r}; choose from {', '.join(GRADE_ITEM_TYPES)}.")
    state["next_id"] += 1
    column_id = state["next_id"]
    node_id = column_id
    if kind == "discussion":
        state["next_id"] += 1
        node_id = state["next_id"]
    row = _assignment_row(column_id, section_id, {"title": title, **fields}, "https://app.schoology.com/")
    row.update(type=kind, grade_item_id=node_id)
    state["assignments"][str(column_id)] = row
    return row
