"""A local Schoology emulator: the REST API v1 a teacher-gradebook reader uses.

Contract (Schoology's REST API v1 documentation):

* Auth: two-legged OAuth 1.0a in the ``Authorization: OAuth realm="Schoology API", ...``
  header, PLAINTEXT (signature ``secret&``, percent-encoded or not) or HMAC-SHA1 over the
  standard base string; ``oauth_token`` empty or absent. A reused timestamp and nonce is
  refused with 401 and the text ``Duplicate timestamp/nonce combination, possible replay
  attack.  Request rejected.``; a bad key or signature with 401 and a short text.
* ``GET /v1/users/me`` answers 303 to ``/v1/users/{uid}`` (a client must sign the
  follow-up afresh).
* Lists page with ``start`` and ``limit`` (default 20, clamped to 200) and carry
  ``total`` and ``links.self``, plus ``links.next`` only while more rows remain. Wrapper
  keys are singular nouns holding arrays (``section``, ``enrollment``, ``assignment``,
  ``grading_category``, ``grading_period``); grades are ``{"grades": {"grade": [...]}}``.
  Ids and counts come as strings where Schoology sends strings.
* Grades: ``exception`` 0 none, 1 excused, 2 incomplete, 3 missing; a grade with an
  exception above 0 is null (missing carries 0, as Schoology's gradebook shows it).
* Rate limit: ``rate_limit`` requests per 5 seconds per consumer key (default 50), then
  429. 403 and 404 answer with an empty body.

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
DEFAULT_LIMIT, MAX_LIMIT = 20, 200
EXCEPTION_EXCUSED, EXCEPTION_INCOMPLETE, EXCEPTION_MISSING = 1, 2, 3


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

    def new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def authenticate(self, request: Request) -> tuple[str | None, Response | None]:
        params = _oauth_params(request.headers.get("authorization", ""))
        consumer = self.state["consumers"].get((params or {}).get("oauth_consumer_key", ""))
        if params is None or consumer is None:
            return None, PlainTextResponse("Invalid OAuth consumer key", status_code=401)
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
            created = []
            for row in (body.get("grading_categories") or {}).get("grading_category") or []:
                category_id = emu.new_id()
                emu.state["grading_categories"][str(category_id)] = {
                    "id": category_id, "section_id": found["id"], "title": row["title"], "delta": 0,
                    "calculation_type": int(row.get("calculation_type", 2)), "weight": int(row.get("weight", 0)),
                }
                created.append({"response_code": 201, "id": category_id, "title": row["title"]})
            return JSONResponse({"grading_categories": {"grading_category": created}}, status_code=207)
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
        rows = sorted((a for a in emu.state["assignments"].values() if a["section_id"] == found["id"]),
                      key=lambda a: a["id"])
        return _page(request, [_public_assignment(a) for a in rows], "assignment", total_as_string=False)

    @route("/v1/sections/{section_id}/assignments/{assignment_id}", ["GET", "PUT", "DELETE"])
    async def assignment(request: Request, uid: str) -> Response:
        found = owned(request, uid)
        row = emu.state["assignments"].get(request.path_params["assignment_id"])
        if found is None or row is None or row["section_id"] != found["id"]:
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
            results = []
            for row in (body.get("grades") or {}).get("grade") or []:
                key = f"{row['assignment_id']}:{row['enrollment_id']}"
                exception = int(row.get("exception") or 0)
                grade = None if exception else row.get("grade")
                if exception == EXCEPTION_MISSING:
                    grade = 0
                emu.state["grades"][key] = {
                    "enrollment_id": int(row["enrollment_id"]), "assignment_id": int(row["assignment_id"]),
                    "grade": None if grade in (None, "") else float(grade), "exception": exception,
                    "timestamp": int(time.time()), "comment": row.get("comment", ""),
                }
                results.append({"response_code": 200, "assignment_id": row["assignment_id"],
                                "enrollment_id": row["enrollment_id"]})
            return JSONResponse({"grades": {"grade": results}})
        wanted_assignment = request.query_params.get("assignment_id")
        assignments_here = {a["id"]: a for a in emu.state["assignments"].values() if a["section_id"] == found["id"]}
        rows = []
        for grade in sorted(emu.state["grades"].values(), key=lambda g: (g["assignment_id"], g["enrollment_id"])):
            assignment_row = assignments_here.get(grade["assignment_id"])
            if assignment_row is None or (wanted_assignment and str(grade["assignment_id"]) != wanted_assignment):
                continue
            rows.append({**grade, "max_points": assignment_row["max_points"], "is_final": 0,
                         "comment_status": None, "override": None, "calculated_grade": None, "pending": None,
                         "type": "assignment", "category_id": int(assignment_row["grading_category"] or 0),
                         "scale_id": 0, "scale_type": 0})
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
         grading_periods, assignments, assignment, grades],
        emulator=emu, faults=faults, state_file=store,
        stats_extra=lambda: {"rate_limited": emu.rate_limited, "rate_limit": emu.rate_limit},
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
