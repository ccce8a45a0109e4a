"""A local OneRoster emulator: the REST binding of OneRoster 1.1 and 1.2 a gradebook client sees.

One state, served under both versions' paths; field names, status values and paths are
1EdTech's. The contract, as passback's OneRoster destination relies on it:

Auth
    ``POST /oauth/token`` (form ``grant_type=client_credentials`` and ``scope``, the client
    by HTTP Basic or by form fields) answers ``{"access_token", "token_type": "bearer",
    "expires_in", "scope"}``. The token endpoint is the provider's choice (1EdTech says it is
    made known out of band); this one is ``{base}/oauth/token``. Bad credentials: 401
    ``{"error": "invalid_client"}``; no scope, or one that is not a OneRoster scope: 400
    ``{"error": "invalid_scope"}``. Scopes are
    ``https://purl.imsglobal.org/spec/or/{v1p1|v1p2}/scope/{name}``; a GET of rostering needs
    ``roster-core.readonly`` (or ``roster.readonly``), a GET of the gradebook
    ``gradebook.readonly``, a PUT ``gradebook.createput``, a DELETE ``gradebook.delete``, each
    of the version of the path. Without a valid token: 401 with the 1EdTech status body
    (``imsx_codeMajor`` "failure", ``imsx_severity`` "error", ``imsx_description``,
    ``imsx_CodeMinor`` ``unauthorisedrequest``) and ``WWW-Authenticate: Bearer``; with a
    token lacking the scope: 403 (``forbidden``).

Paths
    v1p1: ``/ims/oneroster/v1p1/...`` for everything. v1p2: ``/ims/oneroster/rostering/v1p2/...``
    and ``/ims/oneroster/gradebook/v1p2/...``. Rostering (GET only): ``orgs``, ``schools``,
    ``academicSessions``, ``terms``, ``gradingPeriods``, ``courses``, ``classes``, ``users``,
    ``students``, ``teachers``, ``enrollments`` (each also ``/{sourcedId}``) and
    ``classes/{id}/students``. Gradebook: ``categories``, ``lineItems``, ``results`` (GET, and
    GET/PUT/DELETE by ``/{sourcedId}``), ``classes/{id}/lineItems``, ``classes/{id}/results``,
    ``classes/{id}/lineItems/{id}/results``; v1p2 also ``scoreScales`` (listed, empty unless
    given), ``classes/{id}/categories`` (every category: categories are global objects) and
    ``classes/{id}/scoreScales``. Single objects come wrapped by their singular name
    (``{"lineItem": {...}}``), collections by their plural (``{"lineItems": [...]}``); a
    ``sourcedId`` unknown is a 404 (``unknownobject``).

Collections
    ``limit`` (default 100, at most 1000) and ``offset``; ``X-Total-Count`` and a ``Link`` header
    (``next``, ``last``, ``first``, ``prev``) unless the emulator is made without them
    (``total_count=False``, ``links=False``: the spec allows a server to leave them out, and
    then a client reads until a short page). ``filter``: predicates ``field<op>'value'`` with
    ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=`` and ``~`` (contains), a dotted field for a reference
    (``class.sourcedId='c1'``), joined by one kind of logical operator, `` AND `` or `` OR ``; a
    field no object of the collection has: 400 ``invalid_filter_field``. ``sort`` with
    ``orderBy`` (``asc``, ``desc``) and ``fields`` (a comma-separated selection) as the spec says.

Writes (PUT creates or replaces the object with that ``sourcedId``: 201 when it was not
there, 200 when it was; the object is answered back)
    ``PUT lineItems/{id}`` with ``{"lineItem": {sourcedId, status, title, description, assignDate,
    dueDate, class, category, gradingPeriod, resultValueMin, resultValueMax}}``; v1p2 adds
    ``school`` (required there) and ``scoreScale``. Refused with 400 (``invaliddata``): no title,
    dates that are not ISO 8601, an unknown class, category, grading period (v1p1 requires
    one) or school, a category whose ``status`` is "tobedeleted" ("The category {id} is not
    active (status tobedeleted)."), and, as PowerSchool's OneRoster server does (seed error 9),
    a title over ``title_limit`` characters (50 by default): "Value may not contain more than
    50 character(s).". A second active lineItem of the same title and due date in a class
    (another ``sourcedId``) is 409, in PowerSchool's words (seed error 2): "An assignment
    already exists with this name {title} and due date {date} for one or more classes"
    (``unique_titles=False`` turns that off).
    ``PUT results/{id}`` with ``{"result": {sourcedId, status, lineItem, student, scoreStatus,
    score, scoreDate, comment}}``; v1p2 adds ``class``, ``scoreScale``, ``textScore`` and the
    TrueFalseEnum strings ``inProgress``, ``incomplete``, ``late``, ``missing``. ``scoreStatus``
    is one of "exempt", "fully graded", "not submitted", "partially graded", "submitted"
    (v1p2 also an "ext:" extension). v1p1 requires ``score``, v1p2 does not. Refused with 400:
    an unknown or deleted lineItem ("The lineItem {id} is unknown."), and a student who is not
    an active student of the lineItem's class, in PowerSchool's words (seed error 6):
    "Student.id [{student}] does not have an AssignmentStudentAssociation in
    AssignmentSection.Id [{lineItem}]". A PUT through a version's path keeps that version's
    fields only (a v1p1 PUT of a result drops the v1p2 flags: it replaces the object).
    ``PUT categories/{id}`` with ``{"category": {sourcedId, status, title}}`` (v1p2 ``weight``).

Deletes (204; 404 when there is no such object)
    v1p1 removes the object (a lineItem takes its results with it). v1p2 marks it
    ``status`` "tobedeleted" (its results too), as 1.2 servers keep deletions visible: GETs
    still answer it with that status, and a PUT to it is a replace (200) that brings it back.

Throttling and faults
    With ``rate_limit`` set (requests per second per client; off by default, and settable by
    ``POST /_emulator/faults {"rate_limit": n}``), a request over it is answered 429 with the
    status body (``server_busy``) and ``Retry-After: 1``, as is a 429 fault. Faults (429, 500,
    timeouts, resets, scripted answers) come from :mod:`passback.emulators.faults`, as in
    every emulator.

Control (never faulted): ``GET /_emulator/stats``, ``GET|POST /_emulator/faults``,
``GET /_emulator/state``, ``GET /_emulator/writes`` (every write accepted; in process:
``app.state.writes`` and ``app.state.faults``). What a person does in the SIS's own screens
is a method of the emulator (:meth:`OneRosterEmulator.delete_by_hand`), never an API call.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
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

TOKEN_SECONDS = 3600
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
TITLE_LIMIT = 50
VERSIONS = ("v1p1", "v1p2")
SCORE_STATUSES = frozenset({"exempt", "fully graded", "not submitted", "partially graded", "submitted"})
TRUE_FALSE = frozenset({"true", "false"})
ACTIVE, DELETED = "active", "tobedeleted"
SCOPE_NAMES = frozenset({"roster-core.readonly", "roster.readonly", "roster-demographics.readonly",
                         "resource.readonly", "gradebook.readonly", "gradebook-core.readonly", "gradebook.createput",
                         "gradebook.delete"})

BASE = {"orgs", "academicSessions", "courses", "classes", "users", "enrollments"}
LINE_ITEM_FIELDS = {
    "v1p1": ("sourcedId", "status", "dateLastModified", "metadata", "title", "description", "assignDate", "dueDate",
             "class", "category", "gradingPeriod", "resultValueMin", "resultValueMax"),
    "v1p2": ("sourcedId", "status", "dateLastModified", "metadata", "title", "description", "assignDate", "dueDate",
             "class", "school", "category", "gradingPeriod", "academicSession", "scoreScale", "resultValueMin",
             "resultValueMax", "learningObjectiveSet"),
}
RESULT_FIELDS = {
    "v1p1": ("sourcedId", "status", "dateLastModified", "metadata", "lineItem", "student", "scoreStatus", "score",
             "scoreDate", "comment"),
    "v1p2": ("sourcedId", "status", "dateLastModified", "metadata", "lineItem", "student", "class", "scoreScale",
             "scoreStatus", "score", "textScore", "scoreDate", "comment", "learningObjectiveSet", "inProgress",
             "incomplete", "late", "missing"),
}
CATEGORY_FIELDS = {"v1p1": ("sourcedId", "status", "dateLastModified", "metadata", "title"),
                   "v1p2": ("sourcedId", "status", "dateLastModified", "metadata", "title", "weight")}
# Rostering views: path -> (state collection, wrapper singular, wrapper plural, which objects)
ROSTER_VIEWS: dict[str, tuple[str, str, str, Callable[[dict[str, Any]], bool]]] = {
    "orgs": ("orgs", "org", "orgs", lambda o: True),
    "schools": ("orgs", "org", "orgs", lambda o: o.get("type") == "school"),
    "academicSessions": ("academicSessions", "academicSession", "academicSessions", lambda o: True),
    "terms": ("academicSessions", "academicSession", "academicSessions", lambda o: o.get("type") == "term"),
    "gradingPeriods": ("academicSessions", "academicSession", "academicSessions",
                       lambda o: o.get("type") == "gradingPeriod"),
    "courses": ("courses", "course", "courses", lambda o: True),
    "classes": ("classes", "class", "classes", lambda o: True),
    "users": ("users", "user", "users", lambda o: True),
    "students": ("users", "user", "users", lambda o: o.get("role") == "student"),
    "teachers": ("users", "user", "users", lambda o: o.get("role") == "teacher"),
    "enrollments": ("enrollments", "enrollment", "enrollments", lambda o: True),
}
GRADEBOOK = {"categories": "category", "lineItems": "lineItem", "results": "result", "scoreScales": "scoreScale"}
PREDICATE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*(!=|>=|<=|=|>|<|~)\s*'(.*)'\s*$", re.DOTALL)


def empty_state() -> dict[str, Any]:
    return {"clients": {}, "orgs": {}, "academicSessions": {}, "courses": {}, "classes": {}, "users": {},
            "enrollments": {}, "categories": {}, "lineItems": {}, "results": {}, "scoreScales": {}}


def now_iso() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def status_body(minor: str, description: str) -> dict[str, Any]:
    """1EdTech's status information as OneRoster answers a failure."""
    return {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": description,
            "imsx_CodeMinor": {"imsx_codeMinorField": [{"imsx_codeMinorFieldName": "TargetEndSystem",
                                                        "imsx_codeMinorFieldValue": minor}]}}


THROTTLED = (429, orjson.dumps(status_body("server_busy", "Too many requests; slow down and try again.")),
             {"content-type": "application/json", "retry-after": "1"})
"""A throttled request's answer: 429, the status body, Retry-After."""


def failure(status: int, minor: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_body(minor, description), status_code=status, headers=headers)


class Refusal(Exception):
    """A request the emulator answers with a failure status body."""

    def __init__(self, status: int, minor: str, description: str) -> None:
        super().__init__(description)
        self.status, self.minor, self.description = status, minor, description

    def response(self) -> JSONResponse:
        return failure(self.status, self.minor, self.description)


def invalid(description: str) -> Refusal:
    return Refusal(400, "invaliddata", description)


def _iso(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"{field} is required (an ISO 8601 date or date-time).")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else date.fromisoformat(value)
    except ValueError as exc:
        raise invalid(f"{field} {value!r} is not an ISO 8601 date or date-time.") from exc
    return value


def _ref_id(value: Any, field: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, dict) or not value.get("sourcedId"):
        raise invalid(f"{field} must be a reference with a sourcedId.")
    return str(value["sourcedId"])


def field_value(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if isinstance(value, list):
            value = [v.get(part) if isinstance(v, dict) else None for v in value]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def has_field(obj: dict[str, Any], dotted: str) -> bool:
    value: Any = obj
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value else {}
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _compare(value: Any, op: str, wanted: str) -> bool:
    if isinstance(value, list):
        return any(_compare(v, op, wanted) for v in value)
    text = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
    if op == "~":
        return wanted.lower() in text.lower()
    if value is None:
        return op == "!="
    try:  # numbers compare as numbers, everything else as text (ISO dates sort as text)
        left, right = float(text), float(wanted)
    except ValueError:
        left, right = text, wanted  # type: ignore[assignment]
    return {"=": left == right, "!=": left != right, ">": left > right, ">=": left >= right, "<": left < right,
            "<=": left <= right}[op]


def parse_filter(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(logical operator, [(field, op, value)]); raises :class:`Refusal` when it cannot be read."""
    has_and, has_or = " AND " in text, " OR " in text
    if has_and and has_or:
        raise Refusal(400, "invalid_filter_field", "A filter joins its predicates by one logical operator.")
    joiner = " OR " if has_or else " AND "
    predicates = []
    for part in text.split(joiner):
        found = PREDICATE.match(part)
        if found is None:
            raise Refusal(400, "invalid_filter_field", f"Cannot read the filter predicate {part.strip()!r}.")
        predicates.append((found.group(1), found.group(2), found.group(3)))
    return joiner.strip(), predicates


class OneRosterEmulator:
    """State and rules of the emulated OneRoster server; the routes below are thin."""

    def __init__(self, state: dict[str, Any], *, total_count: bool = True, links: bool = True,
                 title_limit: int | None = TITLE_LIMIT, unique_titles: bool = True,
                 rate_limit: int | None = None) -> None:
        self.state = state
        for key, value in empty_state().items():
            state.setdefault(key, value)
        self.total_count = total_count
        self.links = links
        self.title_limit = title_limit
        self.unique_titles = unique_titles
        self.rate_limit = rate_limit
        self.tokens: dict[str, tuple[float, frozenset[str], str]] = {}  # token -> (expires, scopes, client)
        self.requests: Counter[str] = Counter()
        self.windows: dict[str, list[float]] = {}
        self.throttled = 0

    # --- identity -----------------------------------------------------------------------------
    def issue_token(self, client_id: str, client_secret: str, scopes: frozenset[str]) -> str | None:
        if not client_id or self.state["clients"].get(client_id) != client_secret:
            return None
        token = secrets.token_hex(16)
        self.tokens[token] = (time.monotonic() + TOKEN_SECONDS, scopes, client_id)
        return token

    def over_limit(self, client_id: str) -> bool:
        """Whether this request goes over the client's requests of the last second (and is counted if not)."""
        if not self.rate_limit:
            return False
        now = time.monotonic()
        window = [t for t in self.windows.get(client_id, []) if now - t < 1.0]
        self.windows[client_id] = window
        if len(window) >= self.rate_limit:
            self.throttled += 1
            return True
        window.append(now)
        return False

    # --- what a person does in the SIS ------------------------------------------------------
    def delete_by_hand(self, line_item: str, *, soft: bool = False) -> None:
        """A teacher deletes a lineItem in the SIS: gone with its results (``soft``: marked tobedeleted)."""
        self._delete_line_item(line_item, soft)

    # --- lookups -------------------------------------------------------------------------------
    def live(self, collection: str, sourced_id: str | None) -> dict[str, Any] | None:
        found = self.state[collection].get(sourced_id) if sourced_id else None
        return found if found is not None and found.get("status", ACTIVE) == ACTIVE else None

    def enrolled_student(self, class_id: str, user_id: str) -> bool:
        return any(e.get("status", ACTIVE) == ACTIVE and e.get("role") == "student"
                   and e["class"]["sourcedId"] == class_id and e["user"]["sourcedId"] == user_id
                   for e in self.state["enrollments"].values())

    def students_of(self, class_id: str) -> list[dict[str, Any]]:
        ids = [e["user"]["sourcedId"] for e in self.state["enrollments"].values()
               if e.get("status", ACTIVE) == ACTIVE and e.get("role") == "student" and e["class"]["sourcedId"] == class_id]
        return [self.state["users"][u] for u in dict.fromkeys(ids) if u in self.state["users"]]

    # --- gradebook writes -------------------------------------------------------------------
    def put_line_item(self, version: str, sourced_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        item = body.get("lineItem") if isinstance(body, dict) else None
        if not isinstance(item, dict):
            raise invalid('The body must be {"lineItem": {...}}.')
        self._same_id(item, sourced_id)
        title = item.get("title")
        if not isinstance(title, str) or not title.strip():
            raise invalid("title is required.")
        if self.title_limit is not None and len(title) > self.title_limit:
            raise invalid(f"Value may not contain more than {self.title_limit} character(s).")
        _iso(item.get("assignDate"), "assignDate")
        due = _iso(item.get("dueDate"), "dueDate")
        class_id = _ref_id(item.get("class"), "class")
        if self.live("classes", class_id) is None:
            raise invalid(f"The class {class_id} is unknown.")
        category_id = _ref_id(item.get("category"), "category")
        category = self.state["categories"].get(category_id)
        if category is None:
            raise invalid(f"The category {category_id} is unknown.")
        if category.get("status", ACTIVE) != ACTIVE:
            raise invalid(f"The category {category_id} is not active (status {category.get('status')}).")
        period = _ref_id(item.get("gradingPeriod"), "gradingPeriod", required=version == "v1p1")
        if period is not None and self.live("academicSessions", period) is None:
            raise invalid(f"The gradingPeriod {period} is not an academicSession.")
        if version == "v1p2":
            school = _ref_id(item.get("school"), "school")
            if self.live("orgs", school) is None:
                raise invalid(f"The school {school} is unknown.")
        for bound in ("resultValueMin", "resultValueMax"):
            if item.get(bound) is not None and not isinstance(item[bound], int | float):
                raise invalid(f"{bound} must be a number.")
        if self.unique_titles:
            for other in self.state["lineItems"].values():
                if (other["sourcedId"] != sourced_id and other.get("status", ACTIVE) == ACTIVE
                        and other["class"]["sourcedId"] == class_id and other.get("title") == title
                        and str(other.get("dueDate", ""))[:10] == due[:10]):
                    raise Refusal(409, "invaliddata", f"An assignment already exists with this name {title} and due "
                                                      f"date {due[:10]} for one or more classes")
        return self._store("lineItems", version, LINE_ITEM_FIELDS[version], sourced_id, item)

    def put_result(self, version: str, sourced_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            raise invalid('The body must be {"result": {...}}.')
        self._same_id(result, sourced_id)
        line_item_id = _ref_id(result.get("lineItem"), "lineItem")
        line_item = self.live("lineItems", line_item_id)
        if line_item is None:
            raise invalid(f"The lineItem {line_item_id} is unknown.")
        student = _ref_id(result.get("student"), "student")
        class_id = line_item["class"]["sourcedId"]
        if self.live("users", student) is None or not self.enrolled_student(class_id, str(student)):
            raise invalid(f"Student.id [{student}] does not have an AssignmentStudentAssociation in "
                          f"AssignmentSection.Id [{line_item_id}]")
        status = result.get("scoreStatus")
        if status not in SCORE_STATUSES and not (version == "v1p2" and str(status).startswith("ext:")):
            raise invalid(f"scoreStatus {status!r} is not one of {', '.join(sorted(SCORE_STATUSES))}.")
        score = result.get("score")
        if score is None and version == "v1p1":
            raise invalid("score is required.")
        if score is not None and not isinstance(score, int | float):
            raise invalid("score must be a number.")
        _iso(result.get("scoreDate"), "scoreDate")
        if version == "v1p2":
            for flag in ("inProgress", "incomplete", "late", "missing"):
                if flag in result and result[flag] not in TRUE_FALSE:
                    raise invalid(f"{flag} must be \"true\" or \"false\".")
            given_class = _ref_id(result.get("class"), "class", required=False)
            if given_class is not None and given_class != class_id:
                raise invalid(f"The class {given_class} is not the class of lineItem {line_item_id}.")
        return self._store("results", version, RESULT_FIELDS[version], sourced_id, result)

    def put_category(self, version: str, sourced_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        category = body.get("category") if isinstance(body, dict) else None
        if not isinstance(category, dict) or not category.get("title"):
            raise invalid('The body must be {"category": {..., "title": ...}}.')
        self._same_id(category, sourced_id)
        return self._store("categories", version, CATEGORY_FIELDS[version], sourced_id, category)

    def delete(self, collection: str, version: str, sourced_id: str) -> bool:
        if sourced_id not in self.state[collection]:
            return False
        soft = version == "v1p2"
        if collection == "lineItems":
            self._delete_line_item(sourced_id, soft)
        elif soft:
            self.state[collection][sourced_id].update(status=DELETED, dateLastModified=now_iso())
        else:
            del self.state[collection][sourced_id]
        return True

    def _delete_line_item(self, sourced_id: str, soft: bool) -> None:
        stamp = now_iso()
        results = [k for k, r in self.state["results"].items() if r["lineItem"]["sourcedId"] == sourced_id]
        if soft:
            self.state["lineItems"][sourced_id].update(status=DELETED, dateLastModified=stamp)
            for key in results:
                self.state["results"][key].update(status=DELETED, dateLastModified=stamp)
            return
        del self.state["lineItems"][sourced_id]
        for key in results:
            del self.state["results"][key]

    @staticmethod
    def _same_id(obj: dict[str, Any], sourced_id: str) -> None:
        if obj.get("sourcedId", sourced_id) != sourced_id:
            raise invalid(f"The body's sourcedId {obj.get('sourcedId')!r} is not the path's {sourced_id!r}.")
        if obj.get("status", ACTIVE) not in (ACTIVE, DELETED):
            raise invalid(f"status {obj.get('status')!r} is not \"active\" or \"tobedeleted\".")

    def _store(self, collection: str, version: str, fields: tuple[str, ...], sourced_id: str,
               given: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        stored = {k: given[k] for k in fields if k in given}
        stored.update(sourcedId=sourced_id, status=given.get("status", ACTIVE), dateLastModified=now_iso())
        existed = sourced_id in self.state[collection]
        self.state[collection][sourced_id] = stored
        return (200 if existed else 201), stored

    # --- reading -------------------------------------------------------------------------------
    def render(self, collection: str, obj: dict[str, Any], version: str) -> dict[str, Any]:
        """An object as a version serves it: its fields only; v1p2 users carry ``roles``."""
        if collection == "lineItems":
            return {k: obj[k] for k in LINE_ITEM_FIELDS[version] if k in obj}
        if collection == "results":
            return {k: obj[k] for k in RESULT_FIELDS[version] if k in obj}
        if collection == "categories":
            return {k: obj[k] for k in CATEGORY_FIELDS[version] if k in obj}
        if collection == "users" and version == "v1p2":
            orgs = obj.get("orgs") or []
            shown = {k: v for k, v in obj.items() if k != "role"}
            shown["roles"] = [{"roleType": "primary", "role": obj.get("role"), "org": orgs[0] if orgs else None}]
            shown["primaryOrg"] = orgs[0] if orgs else None
            return shown
        return dict(obj)

    def listing(self, request: Request, rows: list[dict[str, Any]], plural: str) -> Response:
        """A collection answer: filtered, sorted, fields selected, one page, with its headers."""
        params = request.query_params
        text = params.get("filter")
        if text:
            joiner, predicates = parse_filter(text)
            for name, _, _ in predicates:
                if rows and not any(has_field(r, name) for r in rows):
                    raise Refusal(400, "invalid_filter_field", f"{name} is not a field of {plural}.")
            test = all if joiner == "AND" else any
            rows = [r for r in rows if test(_compare(field_value(r, f), op, v) for f, op, v in predicates)]
        if params.get("sort"):
            key = params["sort"]
            rows = sorted(rows, key=lambda r: ("" if field_value(r, key) is None else str(field_value(r, key))),
                          reverse=params.get("orderBy", "asc").lower() == "desc")
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
            offset = int(params.get("offset", 0))
        except ValueError as exc:
            raise invalid("limit and offset must be whole numbers.") from exc
        if limit < 1 or offset < 0:
            raise invalid("limit must be at least 1 and offset at least 0.")
        limit = min(limit, MAX_LIMIT)
        page = rows[offset: offset + limit]
        if params.get("fields"):
            wanted = [f.strip() for f in params["fields"].split(",") if f.strip()]
            unknown = [f for f in wanted if rows and not any(f in r for r in rows)]
            if unknown:
                raise Refusal(400, "invalid_selection_field", f"{', '.join(unknown)} is not a field of {plural}.")
            page = [{f: r[f] for f in wanted if f in r} for r in page]
        headers: dict[str, str] = {}
        total = len(rows)
        if self.total_count:
            headers["X-Total-Count"] = str(total)
        if self.links:
            def at(where: int) -> str:
                return str(request.url.include_query_params(limit=limit, offset=where))

            parts = []
            if offset + limit < total:
                parts.append(f'<{at(offset + limit)}>; rel="next"')
            parts.append(f'<{at(max((total - 1) // limit, 0) * limit)}>; rel="last"')
            parts.append(f'<{at(0)}>; rel="first"')
            if offset > 0:
                parts.append(f'<{at(max(offset - limit, 0))}>; rel="prev"')
            headers["Link"] = ", ".join(parts)
        return Response(orjson.dumps({plural: page}), media_type="application/json", headers=headers)


def _scopes(request_scope: str) -> frozenset[str] | None:
    """The scopes asked for, when every one is a OneRoster scope of v1p1 or v1p2; else None."""
    asked = frozenset(request_scope.split())
    prefix = re.compile(r"^https?://purl\.imsglobal\.org/spec/or/(v1p1|v1p2)/scope/(.+)$")
    for scope in asked:
        found = prefix.match(scope)
        if found is None or found.group(2) not in SCOPE_NAMES:
            return None
    return frozenset(s.replace("http://", "https://", 1) for s in asked) if asked else None


def create_app(state: dict[str, Any] | None = None, faults: FaultConfig | None = None,
               state_path: Path | None = None, *, total_count: bool = True, links: bool = True,
               title_limit: int | None = TITLE_LIMIT, unique_titles: bool = True, rate_limit: int | None = None,
               flush_seconds: float = 1.0) -> Starlette:
    """The app. ``total_count``/``links`` False leave out ``X-Total-Count``/``Link``; ``title_limit``
    None and ``unique_titles`` False drop the two refusals PowerSchool's OneRoster server adds;
    ``rate_limit`` throttles each client to that many requests a second."""
    store = StateFile(state_path, flush_seconds)
    emu = OneRosterEmulator(state or store.load() or empty_state(), total_count=total_count, links=links,
                            title_limit=title_limit, unique_titles=unique_titles, rate_limit=rate_limit)
    faults = faults or FaultConfig()

    async def token(request: Request) -> Response:
        emu.requests["POST /oauth/token"] += 1
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        client_id, client_secret = str(form.get("client_id") or ""), str(form.get("client_secret") or "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                client_id = client_secret = ""
        scopes = _scopes(str(form.get("scope") or ""))
        if emu.state["clients"].get(client_id) != client_secret or not client_id:
            return JSONResponse({"error": "invalid_client", "error_description": "Bad client credentials"},
                                status_code=401)
        if scopes is None:
            return JSONResponse({"error": "invalid_scope", "error_description": "Ask for OneRoster scopes."},
                                status_code=400)
        issued = emu.issue_token(client_id, client_secret, scopes)
        return JSONResponse({"access_token": issued, "token_type": "bearer", "expires_in": TOKEN_SECONDS,
                             "scope": " ".join(sorted(scopes))})

    def guarded(version: str, service: str, key: str,
                handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            emu.requests[f"{request.method} {key}"] += 1
            header = request.headers.get("authorization", "")
            held = emu.tokens.get(header[7:].strip()) if header.startswith("Bearer ") else None
            if held is None or held[0] < time.monotonic():
                return failure(401, "unauthorisedrequest", "The access token is missing, unknown or expired.",
                               {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            if emu.over_limit(held[2]):
                return Response(THROTTLED[1], status_code=429, headers=THROTTLED[2])
            needed = _needed_scopes(version, service, request.method)
            if not needed & held[1]:
                return failure(403, "forbidden", f"The token lacks the scope {sorted(needed)[0]}.")
            try:
                response = await handler(request)
            except Refusal as refusal:
                return refusal.response()
            if request.method != "GET":
                store.dirty = True
            return response

        return endpoint

    routes: list[Route] = [Route("/oauth/token", token, methods=["POST"])]
    for version in VERSIONS:
        roster = "/ims/oneroster/v1p1" if version == "v1p1" else "/ims/oneroster/rostering/v1p2"
        book = "/ims/oneroster/v1p1" if version == "v1p1" else "/ims/oneroster/gradebook/v1p2"
        routes += _roster_routes(emu, version, roster, guarded)
        routes += _gradebook_routes(emu, version, book, guarded)

    def set_rate_limit(body: dict[str, Any]) -> None:
        if "rate_limit" in body:
            emu.rate_limit = int(body["rate_limit"]) if body["rate_limit"] else None

    app = emulator_app(routes, emulator=emu, faults=faults, state_file=store, throttled_response=THROTTLED,
                       on_faults=set_rate_limit,
                       stats_extra=lambda: {"throttled": emu.throttled, "rate_limit": emu.rate_limit})
    app.state.faults = faults
    return app


def _needed_scopes(version: str, service: str, method: str) -> frozenset[str]:
    names = {("roster", "GET"): ("roster-core.readonly", "roster.readonly"),
             ("gradebook", "GET"): ("gradebook.readonly", "gradebook-core.readonly"),
             ("gradebook", "PUT"): ("gradebook.createput",), ("gradebook", "DELETE"): ("gradebook.delete",)}
    return frozenset(f"https://purl.imsglobal.org/spec/or/{version}/scope/{n}" for n in names[(service, method)])


Guard = Callable[[str, str, str, Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]


def _one(emu: OneRosterEmulator, collection: str, singular: str, version: str, sourced_id: str,
         visible: Callable[[dict[str, Any]], bool] = lambda o: True) -> Response:
    found = emu.state[collection].get(sourced_id)
    if found is None or not visible(found):
        return failure(404, "unknownobject", f"There is no {singular} with sourcedId {sourced_id}.")
    return Response(orjson.dumps({singular: emu.render(collection, found, version)}), media_type="application/json")


def _roster_routes(emu: OneRosterEmulator, version: str, base: str, guarded: Guard) -> list[Route]:
    routes = []
    for view, (collection, singular, plural, visible) in ROSTER_VIEWS.items():
        def make(collection: str = collection, singular: str = singular, plural: str = plural,
                 visible: Callable[[dict[str, Any]], bool] = visible) -> tuple[Any, Any]:
            async def list_view(request: Request) -> Response:
                rows = [emu.render(collection, o, version) for o in emu.state[collection].values() if visible(o)]
                return emu.listing(request, rows, plural)

            async def one_view(request: Request) -> Response:
                return _one(emu, collection, singular, version, request.path_params["sid"], visible)

            return list_view, one_view

        listing, one = make()
        routes.append(Route(f"{base}/{view}", guarded(version, "roster", f"{base}/{view}", listing), methods=["GET"]))
        routes.append(Route(f"{base}/{view}/{{sid}}", guarded(version, "roster", f"{base}/{view}/{{id}}", one),
                            methods=["GET"]))

    async def class_students(request: Request) -> Response:
        class_id = request.path_params["sid"]
        if class_id not in emu.state["classes"]:
            return failure(404, "unknownobject", f"There is no class with sourcedId {class_id}.")
        rows = [emu.render("users", u, version) for u in emu.students_of(class_id)]
        return emu.listing(request, rows, "users")

    key = f"{base}/classes/{{id}}/students"
    routes.insert(0, Route(f"{base}/classes/{{sid}}/students", guarded(version, "roster", key, class_students),
                           methods=["GET"]))
    return routes


def _gradebook_routes(emu: OneRosterEmulator, version: str, base: str, guarded: Guard) -> list[Route]:
    routes = []
    writers = {"categories": emu.put_category, "lineItems": emu.put_line_item, "results": emu.put_result}
    collections = ["categories", "lineItems", "results"] + (["scoreScales"] if version == "v1p2" else [])
    for collection in collections:
        singular = GRADEBOOK[collection]

        def make(collection: str = collection, singular: str = singular) -> tuple[Any, Any]:
            async def list_view(request: Request) -> Response:
                rows = [emu.render(collection, o, version) for o in emu.state[collection].values()]
                return emu.listing(request, rows, collection)

            async def one_view(request: Request) -> Response:
                sourced_id = request.path_params["sid"]
                if request.method == "GET":
                    return _one(emu, collection, singular, version, sourced_id)
                if request.method == "DELETE":
                    if not emu.delete(collection, version, sourced_id):
                        return failure(404, "unknownobject", f"There is no {singular} with sourcedId {sourced_id}.")
                    return Response(status_code=204)
                try:
                    body = orjson.loads(await request.body())
                except orjson.JSONDecodeError:
                    raise invalid("The body is not JSON.") from None
                status, stored = writers[collection](version, sourced_id, body)
                return Response(orjson.dumps({singular: emu.render(collection, stored, version)}), status_code=status,
                                media_type="application/json")

            return list_view, one_view

        listing, one = make()
        routes.append(Route(f"{base}/{collection}", guarded(version, "gradebook", f"{base}/{collection}", listing),
                            methods=["GET"]))
        methods = ["GET", "PUT", "DELETE"] if collection in writers else ["GET"]
        routes.append(Route(f"{base}/{collection}/{{sid}}",
                            guarded(version, "gradebook", f"{base}/{collection}/{{id}}", one), methods=methods))

    def class_view(collection: str, rows_of: Callable[[str, Request], list[dict[str, Any]]]) -> Any:
        async def endpoint(request: Request) -> Response:
            class_id = request.path_params["sid"]
            if class_id not in emu.state["classes"]:
                return failure(404, "unknownobject", f"There is no class with sourcedId {class_id}.")
            rows = [emu.render(collection, o, version) for o in rows_of(class_id, request)]
            return emu.listing(request, rows, collection)

        return endpoint

    def items_of(class_id: str, request: Request) -> list[dict[str, Any]]:
        return [i for i in emu.state["lineItems"].values() if i["class"]["sourcedId"] == class_id]

    def results_of(class_id: str, request: Request) -> list[dict[str, Any]]:
        items = {i["sourcedId"] for i in items_of(class_id, request)}
        wanted = request.path_params.get("item")
        return [r for r in emu.state["results"].values() if r["lineItem"]["sourcedId"] in items
                and (wanted is None or r["lineItem"]["sourcedId"] == wanted)]

    views: list[tuple[str, str, Callable[[str, Request], list[dict[str, Any]]]]] = [
        ("lineItems", "lineItems", items_of), ("results", "results", results_of),
        ("lineItems/{item}/results", "results", results_of)]
    if version == "v1p2":
        views += [("categories", "categories", lambda c, r: list(emu.state["categories"].values())),
                  ("scoreScales", "scoreScales", lambda c, r: list(emu.state["scoreScales"].values()))]
    for tail, collection, rows_of in views:
        key = f"{base}/classes/{{id}}/{tail.replace('{item}', '{id}')}"
        routes.insert(0, Route(f"{base}/classes/{{sid}}/{tail}", guarded(version, "gradebook", key,
                                                                          class_view(collection, rows_of)),
                               methods=["GET"]))
    return routes
