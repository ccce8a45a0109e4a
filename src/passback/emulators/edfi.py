"""A local Ed-Fi ODS/API emulator (v7.2 contract, Data Standard 5.1): Grades and what they need.

* ``GET /``: the discovery document (``version``, ``informationalVersion``, ``suite``, ``build``,
  ``dataModels``, ``urls`` with ``oauth``, ``dependencies``, ``openApiMetadata``,
  ``dataManagementApi``, ...).
* ``POST /oauth/token``: client credentials, by HTTP Basic or form fields; answers
  ``{"access_token", "expires_in", "token_type": "bearer"}``; bad credentials are 401
  ``{"error": "invalid_client"}``.
* ``/data/v3/ed-fi/{resource}`` for ``grades``, ``gradingPeriods``, ``sessions``,
  ``sections`` and ``studentSectionAssociations``: POST is an upsert by natural key
  (201 Created, or 200 OK when the key exists; empty body; ``Location`` and a quoted
  ``ETag``); GET pages with ``offset``/``limit`` (default 25, at most 500) and
  ``totalCount=true`` gives a ``Total-Count`` header (unless the emulator is told to leave it
  out, as some hosts do); GET, PUT (204) and DELETE (204) by id, ids being 32 hex digits.
  A PUT may change the natural key of a ``grades`` or ``studentSectionAssociations`` record
  (both ship with cascading updates in the ODS): an association's new key cascades into the
  grades that refer to it, each a key change of its own. Any other key change is a 400 (the
  ODS also cascades sections and sessions; this emulator does not model that).
* Change queries (ODS/API v7): every insert, update, key change and delete takes the next
  value of one global change version. ``GET /changeQueries/v1/availableChangeVersions``
  answers ``{"oldestChangeVersion", "newestChangeVersion"}``; every collection takes
  ``minChangeVersion`` / ``maxChangeVersion`` (records last changed in that window);
  ``{collection}/deletes`` lists ``{"id", "changeVersion", "keyValues"}`` of deleted records
  and ``{collection}/keyChanges`` ``{"id", "changeVersion", "oldKeyValues", "newKeyValues"}``
  (one entry per record: its first old and last new key in the window), both paged.
* A Grade's natural key is its ``gradeTypeDescriptor``, ``gradingPeriodReference``
  (descriptor, name, school, year) and ``studentSectionAssociationReference``. A POST
  whose referenced grading period or student section association does not exist gets
  409 ``urn:ed-fi:api:data-conflict:unresolved-reference`` ("The referenced
  'StudentSectionAssociation' item does not exist."); an unknown descriptor or a missing
  required field 400 ``urn:ed-fi:api:bad-request:data-validation-failed``
  (problem-details bodies with ``detail``, ``type``, ``title``, ``status``,
  ``correlationId``).
* ``GET /metadata/`` lists the OpenAPI documents; ``GET /metadata/data/v3/dependencies``
  gives the resources in load order. Enough for ``lightbeam send`` to work unchanged.

Control (never faulted): ``/_emulator/stats``, ``/_emulator/faults``, ``/_emulator/state``.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passback.emulators.app import emulator_app
from passback.emulators.faults import FaultConfig
from passback.emulators.state import StateFile

DATA = "/data/v3/ed-fi"
MAX_LIMIT, DEFAULT_LIMIT = 500, 25
TOKEN_SECONDS = 1800


def _ssa_ref(ref: dict[str, Any]) -> tuple[Any, ...]:
    return (ref["beginDate"], ref["localCourseCode"], int(ref["schoolId"]), int(ref["schoolYear"]),
            ref["sectionIdentifier"], ref["sessionName"], ref["studentUniqueId"])


def _period_ref(ref: dict[str, Any]) -> tuple[Any, ...]:
    return (ref["gradingPeriodDescriptor"], ref["gradingPeriodName"], int(ref["schoolId"]), int(ref["schoolYear"]))


def _section_ref(ref: dict[str, Any]) -> tuple[Any, ...]:
    return (ref["localCourseCode"], int(ref["schoolId"]), int(ref["schoolYear"]), ref["sectionIdentifier"],
            ref["sessionName"])


KEYS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    "grades": lambda r: (r["gradeTypeDescriptor"], *_period_ref(r["gradingPeriodReference"]),
                         *_ssa_ref(r["studentSectionAssociationReference"])),
    "gradingPeriods": lambda r: (r["gradingPeriodDescriptor"], r["gradingPeriodName"],
                                 int(r["schoolReference"]["schoolId"]), int(r["schoolYearTypeReference"]["schoolYear"])),
    "sessions": lambda r: (int(r["schoolReference"]["schoolId"]), int(r["schoolYearTypeReference"]["schoolYear"]),
                           r["sessionName"]),
    "sections": lambda r: (r["courseOfferingReference"]["localCourseCode"], int(r["courseOfferingReference"]["schoolId"]),
                           int(r["courseOfferingReference"]["schoolYear"]), r["sectionIdentifier"],
                           r["courseOfferingReference"]["sessionName"]),
    "studentSectionAssociations": lambda r: (r["beginDate"], *_section_ref(r["sectionReference"]),
                                             r["studentReference"]["studentUniqueId"]),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "grades": ("gradeTypeDescriptor", "gradingPeriodReference", "studentSectionAssociationReference"),
    "gradingPeriods": ("gradingPeriodDescriptor", "gradingPeriodName", "schoolReference", "schoolYearTypeReference",
                       "beginDate", "endDate", "totalInstructionalDays"),
    "sessions": ("sessionName", "schoolReference", "schoolYearTypeReference", "beginDate", "endDate",
                 "termDescriptor", "totalInstructionalDays"),
    "sections": ("sectionIdentifier", "courseOfferingReference"),
    "studentSectionAssociations": ("beginDate", "sectionReference", "studentReference"),
}
DEPENDENCY_ORDER = ("sessions", "gradingPeriods", "sections", "studentSectionAssociations", "grades")
CASCADING = frozenset({"grades", "studentSectionAssociations"})  # key updates allowed (and cascaded)


def _ssa_values(ref: dict[str, Any]) -> dict[str, Any]:
    return {"beginDate": ref["beginDate"], "localCourseCode": ref["localCourseCode"], "schoolId": int(ref["schoolId"]),
            "schoolYear": int(ref["schoolYear"]), "sectionIdentifier": ref["sectionIdentifier"],
            "sessionName": ref["sessionName"], "studentUniqueId": ref["studentUniqueId"]}


# The natural key as the change-query routes name it: one flat object, a shared schoolId unified.
KEY_VALUES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "grades": lambda r: {"gradeTypeDescriptor": r["gradeTypeDescriptor"],
                         "gradingPeriodDescriptor": r["gradingPeriodReference"]["gradingPeriodDescriptor"],
                         "gradingPeriodName": r["gradingPeriodReference"]["gradingPeriodName"],
                         "gradingPeriodSchoolYear": int(r["gradingPeriodReference"]["schoolYear"]),
                         **_ssa_values(r["studentSectionAssociationReference"])},
    "gradingPeriods": lambda r: {"gradingPeriodDescriptor": r["gradingPeriodDescriptor"],
                                 "gradingPeriodName": r["gradingPeriodName"],
                                 "schoolId": int(r["schoolReference"]["schoolId"]),
                                 "schoolYear": int(r["schoolYearTypeReference"]["schoolYear"])},
    "sessions": lambda r: {"schoolId": int(r["schoolReference"]["schoolId"]),
                           "schoolYear": int(r["schoolYearTypeReference"]["schoolYear"]), "sessionName": r["sessionName"]},
    "sections": lambda r: {"localCourseCode": r["courseOfferingReference"]["localCourseCode"],
                           "schoolId": int(r["courseOfferingReference"]["schoolId"]),
                           "schoolYear": int(r["courseOfferingReference"]["schoolYear"]),
                           "sectionIdentifier": r["sectionIdentifier"],
                           "sessionName": r["courseOfferingReference"]["sessionName"]},
    "studentSectionAssociations": lambda r: _ssa_values({**r["sectionReference"], "beginDate": r["beginDate"],
                                                         "studentUniqueId": r["studentReference"]["studentUniqueId"]}),
}
DESCRIPTOR_FIELDS = {"grades": ("gradeTypeDescriptor",), "gradingPeriods": ("gradingPeriodDescriptor",),
                     "sessions": ("termDescriptor",)}


def empty_state() -> dict[str, Any]:
    return {"clients": {}, "descriptors": [], "resources": {name: {} for name in KEYS}}


def empty_tracking() -> dict[str, Any]:
    """What change queries read: the last version, each record's version, deletes and key changes."""
    return {"version": 0, "records": {name: {} for name in KEYS}, "deletes": {name: [] for name in KEYS},
            "keyChanges": {name: [] for name in KEYS}}


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, "type": f"urn:ed-fi:api:{kind}", "title": title, "status": status,
                         "correlationId": uuid.uuid4().hex, **extra}, status_code=status,
                        media_type="application/problem+json")


class EdFiEmulator:
    def __init__(self, state: dict[str, Any], total_count: bool = True) -> None:
        self.state = state
        self.total_count = total_count  # False: no Total-Count header, even when asked (some hosts do so)
        self.tokens: dict[str, float] = {}
        self.ids = (f"{uuid.uuid4().hex[:20]}{n:012x}" for n in itertools.count(1))
        self._stamp = (0, "")
        self.requests: Counter[str] = Counter()
        self.descriptors = set(state["descriptors"])
        self.index: dict[str, dict[tuple[Any, ...], str]] = {
            name: {KEYS[name](record): record_id for record_id, record in rows.items()}
            for name, rows in state["resources"].items()
        }
        self.tracking = state.setdefault("changeTracking", empty_tracking())
        for name, rows in state["resources"].items():  # records loaded without a version (a generated state)
            versions = self.tracking["records"].setdefault(name, {})
            for record_id in rows:
                if record_id not in versions:
                    versions[record_id] = self.next_version()

    # --- change tracking -------------------------------------------------------------------
    def next_version(self) -> int:
        self.tracking["version"] += 1
        return int(self.tracking["version"])

    def touched(self, resource: str, record_id: str) -> None:
        self.tracking["records"][resource][record_id] = self.next_version()

    def changed_since(self, resource: str, low: int, high: int | None) -> list[str]:
        """Ids of the records last changed within [low, high], in the collection's order."""
        versions = self.tracking["records"][resource]
        return [record_id for record_id in self.state["resources"][resource]
                if low <= versions.get(record_id, 0) and (high is None or versions.get(record_id, 0) <= high)]

    def deletes(self, resource: str, low: int, high: int | None) -> list[dict[str, Any]]:
        return [d for d in self.tracking["deletes"][resource]
                if low <= d["changeVersion"] and (high is None or d["changeVersion"] <= high)]

    def key_changes(self, resource: str, low: int, high: int | None) -> list[dict[str, Any]]:
        """One entry per record: the first old key and the last new key within the window."""
        merged: dict[str, dict[str, Any]] = {}
        for change in self.tracking["keyChanges"][resource]:
            if low <= change["changeVersion"] and (high is None or change["changeVersion"] <= high):
                first = merged.get(change["id"])
                merged[change["id"]] = change if first is None else {**change, "oldKeyValues": first["oldKeyValues"]}
        return list(merged.values())

    def rekey(self, resource: str, record_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Store ``new`` under ``record_id`` in place of ``old`` (a different key), cascading as the ODS does."""
        self.index[resource].pop(KEYS[resource](old), None)
        self.index[resource][KEYS[resource](new)] = record_id
        self.state["resources"][resource][record_id] = new
        version = self.next_version()
        self.tracking["records"][resource][record_id] = version
        self.tracking["keyChanges"][resource].append({"id": record_id, "changeVersion": version,
                                                      "oldKeyValues": KEY_VALUES[resource](old),
                                                      "newKeyValues": KEY_VALUES[resource](new)})
        if resource == "studentSectionAssociations":
            self._cascade_association(_ssa_ref(association_reference(old)), association_reference(new))

    def _cascade_association(self, old_key: tuple[Any, ...], reference: dict[str, Any]) -> None:
        for grade_id, grade in list(self.state["resources"]["grades"].items()):
            if _ssa_ref(grade["studentSectionAssociationReference"]) == old_key:
                self.rekey("grades", grade_id, grade, {**grade, "studentSectionAssociationReference": dict(reference)})

    def issue(self, client_id: str, client_secret: str) -> str | None:
        if not client_id or self.state["clients"].get(client_id) != client_secret:
            return None
        token = secrets.token_hex(16)
        self.tokens[token] = time.monotonic() + TOKEN_SECONDS
        return token

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[7:] if header[:7].lower() == "bearer " else ""
        expires = self.tokens.get(token)
        return expires is not None and expires > time.monotonic()

    def check(self, resource: str, body: dict[str, Any]) -> Response | None:
        missing = [f for f in REQUIRED[resource] if body.get(f) in (None, "")]
        if missing:
            return problem(400, "bad-request:data-validation-failed", "Data Validation Failed",
                           "Data validation failed. See 'validationErrors' for details.",
                           validationErrors={f"$.{f}": [f"{f} is required."] for f in missing})
        for field in DESCRIPTOR_FIELDS.get(resource, ()):
            if body[field] not in self.descriptors:
                return problem(400, "bad-request:data-validation-failed", "Data Validation Failed",
                               "Data validation failed. See 'validationErrors' for details.",
                               validationErrors={f"$.{field}": [
                                   f"{field[0].upper()}{field[1:]} value '{body[field]}' does not exist."]})
        if resource == "grades":
            if int(body["gradingPeriodReference"]["schoolId"]) != int(
                    body["studentSectionAssociationReference"]["schoolId"]):
                return problem(400, "bad-request:data-validation-failed", "Data Validation Failed",
                               "Data validation failed. See 'validationErrors' for details.",
                               validationErrors={"$.schoolId": ["The two references name different schools."]})
            if _period_ref(body["gradingPeriodReference"]) not in self.index["gradingPeriods"]:
                return problem(409, "data-conflict:unresolved-reference", "Unresolved Reference",
                               "The referenced 'GradingPeriod' item does not exist.")
            if _ssa_ref(body["studentSectionAssociationReference"]) not in self.index["studentSectionAssociations"]:
                return problem(409, "data-conflict:unresolved-reference", "Unresolved Reference",
                               "The referenced 'StudentSectionAssociation' item does not exist.")
        return None

    def upsert(self, resource: str, body: dict[str, Any]) -> tuple[str, bool]:
        key = KEYS[resource](body)
        index = self.index[resource]
        record_id = index.get(key)
        created = record_id is None
        if created:
            record_id = next(self.ids)
            index[key] = record_id
        body.pop("id", None)
        body["_etag"] = str(time.time_ns() // 100)
        body["_lastModifiedDate"] = self.modified()
        self.state["resources"][resource][record_id] = body
        self.touched(resource, record_id)
        return record_id, created

    def modified(self) -> str:
        """The ODS's timestamp format, formatted once a second rather than once a record."""
        second = int(time.time())
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
        return self._stamp[1]

    def delete(self, resource: str, record_id: str) -> bool:
        record = self.state["resources"][resource].pop(record_id, None)
        if record is None:
            return False
        self.index[resource].pop(KEYS[resource](record), None)
        self.tracking["records"][resource].pop(record_id, None)
        self.tracking["deletes"][resource].append({"id": record_id, "changeVersion": self.next_version(),
                                                   "keyValues": KEY_VALUES[resource](record)})
        return True


def association_reference(record: dict[str, Any]) -> dict[str, Any]:
    """A StudentSectionAssociation record as the reference a Grade makes to it."""
    return {**record["sectionReference"], "beginDate": record["beginDate"],
            "studentUniqueId": record["studentReference"]["studentUniqueId"]}


class PostFastPath:
    """POSTs to a resource collection, answered before the router: most of a reporting run.

    Same rules, same answers and headers as the routed handler; only Starlette's routing
    and request objects are skipped, so the emulator is not the slower side of a bench.
    """

    def __init__(self, app: Any, emulator: EdFiEmulator, state_file: StateFile) -> None:
        self.app = app
        self.emu = emulator
        self.state_file = state_file

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        name = path[len(DATA) + 1 :] if scope["type"] == "http" and path.startswith(DATA + "/") else ""
        if scope.get("method") != "POST" or name not in KEYS:
            await self.app(scope, receive, send)
            return
        emu = self.emu
        emu.requests[f"POST {DATA}/{name}"] += 1
        headers = dict(scope["headers"])
        token = headers.get(b"authorization", b"")[7:].decode()
        expires = emu.tokens.get(token)
        if expires is None or expires <= time.monotonic():
            refusal: Response = problem(401, "security:authentication", "Authentication Failed",
                                        "Invalid or expired token.")
            await refusal(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            await problem(400, "bad-request", "Bad Request", "The request body is not valid JSON.")(scope, receive, send)
            return
        refused = emu.check(name, body)
        if refused is not None:
            await refused(scope, receive, send)
            return
        record_id, created = emu.upsert(name, body)
        self.state_file.dirty = True
        host = headers.get(b"host", b"127.0.0.1").decode()
        await send({"type": "http.response.start", "status": 201 if created else 200, "headers": [
            (b"location", f"{scope.get('scheme', 'http')}://{host}{DATA}/{name}/{record_id}".encode()),
            (b"etag", f'"{body["_etag"]}"'.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def _window(request: Request) -> tuple[int, int | None, int, int] | Response:
    """minChangeVersion, maxChangeVersion, offset and limit of a listing, or the ODS's 400."""
    params = request.query_params
    try:
        low = int(params.get("minChangeVersion", 0))
        high = int(params["maxChangeVersion"]) if "maxChangeVersion" in params else None
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        return problem(400, "bad-request", "Bad Request", "offset, limit and change versions must be integers.")
    if limit > MAX_LIMIT or limit < 0 or offset < 0:
        return problem(400, "bad-request:parameter-validation-failed", "Parameter Validation Failed",
                       "The request construction was invalid.",
                       errors=[f"Limit must be a value between 0 and {MAX_LIMIT}."])
    return low, high, offset, limit


def create_app(state: dict[str, Any] | None = None, faults: FaultConfig | None = None,
               state_path: Path | None = None, flush_seconds: float = 1.0, total_count: bool = True,
               change_queries: bool = True) -> Any:
    """The app; ``total_count=False`` leaves out Total-Count, ``change_queries=False`` answers the
    change-version route 404, as a host that turned the feature off does."""
    store = StateFile(state_path, flush_seconds)
    emu = EdFiEmulator(state or store.load() or empty_state(), total_count=total_count)
    faults = faults or FaultConfig()

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def discovery(request: Request) -> Response:
        root = base(request)
        return JSONResponse({
            "version": "7.2", "informationalVersion": "7.2", "suite": "3", "build": "7.2.1201.0",
            "dataModels": [{"name": "Ed-Fi", "version": "5.1.0", "informationalVersion": "The Ed-Fi Data Model 5.1"}],
            "urls": {"dependencies": f"{root}/metadata/data/v3/dependencies", "openApiMetadata": f"{root}/metadata/",
                     "oauth": f"{root}/oauth/token", "dataManagementApi": f"{root}/data/v3/",
                     "xsdMetadata": f"{root}/metadata/xsd", "changeQueries": f"{root}/changeQueries/v1/",
                     "composites": f"{root}/composites/v1/", "identity": f"{root}/identity/v2/"},
        })

    async def token(request: Request) -> Response:
        emu.requests["POST /oauth/token"] += 1
        form = dict(await request.form()) if "form" in request.headers.get("content-type", "") else (
            await request.json() if request.headers.get("content-type", "").startswith("application/json") else {})
        client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        issued = emu.issue(client_id, client_secret)
        if issued is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": issued, "expires_in": TOKEN_SECONDS, "token_type": "bearer"})

    async def metadata(request: Request) -> Response:
        root = base(request)
        return JSONResponse([
            {"name": "Resources", "endpointUri": f"{root}/metadata/data/v3/resources/swagger.json", "prefix": ""},
            {"name": "Descriptors", "endpointUri": f"{root}/metadata/data/v3/descriptors/swagger.json", "prefix": ""},
        ])

    async def dependencies(request: Request) -> Response:
        return JSONResponse([{"resource": f"/ed-fi/{name}", "order": order, "operations": ["Create", "Update"]}
                             for order, name in enumerate(DEPENDENCY_ORDER, start=1)])

    async def swagger(request: Request) -> Response:
        paths = {f"/ed-fi/{name}": {"post": {"requestBody": {"content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/edFi_{name[:-1]}"}}}}}} for name in KEYS}
        schemas = {f"edFi_{name[:-1]}": {"type": "object", "required": list(REQUIRED[name])} for name in KEYS}
        return JSONResponse({"openapi": "3.0.1", "info": {"title": "Ed-Fi Resources", "version": "3"},
                             "servers": [{"url": f"{base(request)}/data/v3"}], "paths": paths,
                             "components": {"schemas": schemas}})

    def resource_route(name: str) -> list[Route]:
        collection = f"{DATA}/{name}"

        async def items(request: Request) -> Response:
            emu.requests[f"{request.method} {collection}"] += 1
            if not emu.authorized(request):
                return problem(401, "security:authentication", "Authentication Failed", "Invalid or expired token.")
            window = _window(request)
            if isinstance(window, Response):
                return window
            low, high, offset, limit = window
            rows = emu.state["resources"][name]
            if "minChangeVersion" in request.query_params or high is not None:
                ids = emu.changed_since(name, low, high)
                page = [{"id": record_id, **rows[record_id]} for record_id in ids[offset : offset + limit]]
                total = len(ids)
            else:
                page = [{"id": record_id, **record}
                        for record_id, record in itertools.islice(rows.items(), offset, offset + limit)]
                total = len(rows)
            counted = request.query_params.get("totalCount") == "true" and emu.total_count
            return Response(orjson.dumps(page), headers={"Total-Count": str(total)} if counted else {},
                            media_type="application/json")

        def tracked(kind: str) -> Callable[[Request], Any]:
            async def listing(request: Request) -> Response:
                emu.requests[f"GET {collection}/{kind}"] += 1
                if not emu.authorized(request):
                    return problem(401, "security:authentication", "Authentication Failed", "Invalid or expired token.")
                window = _window(request)
                if isinstance(window, Response):
                    return window
                low, high, offset, limit = window
                found = emu.deletes(name, low, high) if kind == "deletes" else emu.key_changes(name, low, high)
                counted = request.query_params.get("totalCount") == "true" and emu.total_count
                return Response(orjson.dumps(found[offset : offset + limit]), media_type="application/json",
                                headers={"Total-Count": str(len(found))} if counted else {})
            return listing

        async def item(request: Request) -> Response:
            emu.requests[f"{request.method} {collection}/{{id}}"] += 1
            if not emu.authorized(request):
                return problem(401, "security:authentication", "Authentication Failed", "Invalid or expired token.")
            record_id = request.path_params["record_id"]
            record = emu.state["resources"][name].get(record_id)
            if record is None:
                detail = {"GET": "The specified item could not be found.", "PUT": "Resource to update was not found.",
                          "DELETE": "Resource to delete was not found."}[request.method]
                return problem(404, "not-found", "Not Found", detail)
            if request.method == "GET":
                return JSONResponse({"id": record_id, **record})
            if request.method == "DELETE":
                emu.delete(name, record_id)
                store.dirty = True
                return Response(status_code=204)
            body = orjson.loads(await request.body())
            refused = emu.check(name, body)
            if refused is not None:
                return refused
            if KEYS[name](body) != KEYS[name](record) and name not in CASCADING:
                return problem(400, "bad-request:data-validation-failed", "Data Validation Failed",
                               "Key values for this resource cannot be changed. Delete and recreate the resource.")
            body.pop("id", None)
            body["_etag"] = str(time.time_ns() // 100)
            body["_lastModifiedDate"] = emu.modified()
            if KEYS[name](body) != KEYS[name](record):
                emu.rekey(name, record_id, record, body)
            else:
                emu.state["resources"][name][record_id] = body
                emu.touched(name, record_id)
            store.dirty = True
            return Response(status_code=204, headers={"ETag": f'"{body["_etag"]}"'})

        return [Route(collection, items, methods=["GET"]),  # POSTs are answered by PostFastPath
                Route(collection + "/deletes", tracked("deletes"), methods=["GET"]),
                Route(collection + "/keyChanges", tracked("keyChanges"), methods=["GET"]),
                Route(collection + "/{record_id}", item, methods=["GET", "PUT", "DELETE"])]

    async def change_versions(request: Request) -> Response:
        emu.requests["GET /changeQueries/v1/availableChangeVersions"] += 1
        if not emu.authorized(request):
            return problem(401, "security:authentication", "Authentication Failed", "Invalid or expired token.")
        if not change_queries:
            return problem(404, "not-found", "Not Found", "The specified resource could not be found.")
        return JSONResponse({"oldestChangeVersion": 0, "newestChangeVersion": emu.tracking["version"]})

    routes = [Route("/", discovery, methods=["GET"]), Route("/oauth/token", token, methods=["POST"]),
              Route("/metadata/", metadata, methods=["GET"]),
              Route("/metadata/data/v3/dependencies", dependencies, methods=["GET"]),
              Route("/metadata/data/v3/resources/swagger.json", swagger, methods=["GET"]),
              Route("/changeQueries/v1/availableChangeVersions", change_versions, methods=["GET"]),
              Route("/ChangeQueries/v1/availableChangeVersions", change_versions, methods=["GET"])]
    for name in KEYS:
        routes.extend(resource_route(name))
    return emulator_app(routes, emulator=emu, faults=faults, state_file=store,
                        fast_path=lambda app: PostFastPath(app, emu, store))
