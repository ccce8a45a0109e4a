"""The Canvas emulator as an LTI Advantage platform: the token endpoint, Assignment and Grade Services, Names and Role.

Contract (Canvas's developer documentation "Line Items", "Score", "Result" and "Names and
Role" API pages, ``Lti::IMS::*Controller`` in canvas-lms, and the 1EdTech AGS 2.0, NRPS 2.0
and Security Framework 1.0 specifications; where this file had to choose, it says so):

* ``POST /login/oauth2/token`` (form): ``grant_type=client_credentials``,
  ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``,
  ``client_assertion`` (a JWT) and ``scope`` (space separated). The assertion's ``sub``
  names the developer key (its ``client_id``); its RS256 signature is checked with the
  key's ``public_jwk`` or, failing that, the set fetched from its ``public_jwk_url`` (with
  httpx, the key chosen by the header's ``kid``). ``iss`` and ``sub`` must be the client
  id, ``aud`` must name this token URL, ``exp`` must be to come, ``iat`` not to come (60
  seconds' leeway), ``jti`` used once. The answer: ``{"access_token", "token_type":
  "Bearer", "expires_in": 3600, "scope"}``, the scope being the asked-for scopes the
  developer key has (none of them: ``400 invalid_scope``). Refusals are OAuth's: ``400
  unsupported_grant_type``; ``401 invalid_client`` for an unknown client id; ``400
  invalid_request`` with an ``error_description`` for anything wrong with the assertion
  (``JWS signature invalid.`` for a signature the key does not verify).
* Every service below takes ``Authorization: Bearer <access token>``; refused with 401
  and ``{"errors": {"type": "unauthorized", "message": ...}}``: ``Missing access token``,
  ``Invalid access token``, ``Access token expired``, ``Unknown or inactive Developer Key``,
  ``Insufficient permissions`` (the token lacks the service's scope). An unknown course,
  line item or result is Canvas's ``404 {"errors": [{"message": "The specified resource
  does not exist."}]}``; so is a line item of another developer key (the emulator's choice).
* ``GET /api/lti/courses/:course_id/line_items`` (``application/vnd.ims.lis.v2.lineitemcontainer+json``):
  the developer key's own line items in the course, filtered by ``resource_id``, ``tag``,
  ``resource_link_id``; ``limit`` (or ``per_page``, default 10, at most 100) and ``page``,
  with one ``Link`` header (rels current, next, prev, first, last), as Canvas pages.
* ``POST`` there (``application/vnd.ims.lis.v2.lineitem+json``): ``label`` and
  ``scoreMaximum`` are required (``400 {"errors": {"type": "bad_request", "message": "param
  is missing or the value is empty: label"}}``), ``scoreMaximum`` a number of at least 0;
  ``resourceId``, ``tag``, ``resourceLinkId`` (stored, not checked), ``startDateTime``
  and ``endDateTime`` (ISO 8601). As in Canvas, a line item is backed by an assignment:
  the create makes one in the course (name = label, points possible = scoreMaximum,
  due = endDateTime, unlock = startDateTime, submission type ``none``, published, in the
  course's first assignment group), so the teacher sees a gradebook column. A label over
  255 characters is ``422 {"errors": {"title": [{"attribute": "title", "type": "too_long",
  "message": "is too long (maximum is 255 characters)"}]}}`` (the assignment would not
  save; the status is the emulator's choice). The answer is ``200`` with the line item.
* ``GET|PUT|DELETE /api/lti/courses/:course_id/line_items/:id``: a line item reads its
  label, maximum and dates from its assignment, so a teacher's rename in Canvas shows
  in it; ``PUT`` changes ``label``, ``scoreMaximum``, ``resourceId``, ``tag``,
  ``startDateTime``, ``endDateTime`` (on the assignment too); ``DELETE`` answers 204 and
  deletes the assignment with its submissions and results. An assignment deleted in
  Canvas takes its line item with it.
* ``POST .../line_items/:id/scores`` (``application/vnd.ims.lis.v1.score+json``): ``userId``
  (the user's LTI id, ``sub``, or the Canvas user id), ``activityProgress`` (Initialized,
  Started, InProgress, Submitted, Completed), ``gradingProgress`` (FullyGraded, Pending,
  PendingManual, Failed, NotReady) and ``timestamp`` are required (400 otherwise); a user
  who is not an active student of the course is ``422 User not found in course or is not
  a student``; ``scoreGiven`` without ``scoreMaximum`` is ``412 ScoreMaximum must be present
  if ScoreGiven is present``; a negative one is 422; a timestamp that does not parse is
  ``400 Provided timestamp of X not a valid timestamp`` and one older than the result's
  last update ``400 Provided timestamp of X before last updated timestamp of Y``.
  ``scoreGiven`` above ``scoreMaximum`` is taken (extra credit). With FullyGraded or
  PendingManual the submission is graded: score = scoreGiven x points possible /
  scoreMaximum (complete / full points for a pass-fail assignment); without ``scoreGiven``
  the grade is removed. NotReady, Failed and Pending leave the score as it was. The
  result keeps ``scoreGiven``, ``scoreMaximum``, ``comment`` and the progress values; the
  answer is ``200 {"resultUrl": ...}``. Canvas's ``https://canvas.instructure.com/lti/submission``
  extension is ignored (no submission attempt is made).
* ``GET .../line_items/:id/results`` (``application/vnd.ims.lis.v2.resultcontainer+json``),
  ``user_id`` filter, paged like line items; ``GET .../results/:result_id`` one result. A
  result is ``{id, scoreOf, userId, resultScore, resultMaximum, comment}`` without its
  null fields. A grade the teacher changes in Canvas becomes the result's
  ``resultScore`` and moves its update time (Canvas's ``Submission#update_line_item_result``).
* ``GET /api/lti/courses/:course_id/names_and_roles``
  (``application/vnd.ims.lti-nrps.v2.membershipcontainer+json``): ``{id, context: {id, label,
  title}, members}``, each member ``status`` (Active or Inactive), ``user_id`` (``sub``),
  ``roles`` (context roles), and as the key's privacy level allows, ``name``,
  ``given_name``, ``family_name``, ``email`` and ``lis_person_sourcedid`` (the SIS user id,
  public keys only). ``role`` filters (a full role URI or its last word), ``limit`` and
  ``page`` page it, with ``Link: rel="next"``.

Everything lives in the emulator's state (``state["lti"]``: access tokens, used ``jti``,
line items, results), so a restarted emulator keeps it.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from passback.emulators.lti_platform import ENROLLMENT_ROLES, TOKEN_PATH, LtiPlatform, _hex_id

if TYPE_CHECKING:
    from passback.emulators.canvas import CanvasEmulator

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_SECONDS = 3600
LEEWAY = 60
AGS = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LINEITEM_SCOPES = (AGS + "lineitem",)
READ_LINEITEM_SCOPES = (AGS + "lineitem", AGS + "lineitem.readonly")
RESULT_SCOPES = (AGS + "result.readonly",)
SCORE_SCOPES = (AGS + "score",)
NRPS_SCOPES = ("https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",)
LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
RESULTS = "application/vnd.ims.lis.v2.resultcontainer+json"
RESULT = "application/vnd.ims.lis.v2.result+json"
MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
ACTIVITY = ("Initialized", "Started", "InProgress", "Submitted", "Completed")
GRADING = ("FullyGraded", "Pending", "PendingManual", "Failed", "NotReady")
GRADED = ("FullyGraded", "PendingManual")
TITLE_MAX = 255
LIS = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _canvas_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def service_error(message: str, status: int = 401, kind: str = "unauthorized") -> JSONResponse:
    return JSONResponse({"errors": {"type": kind, "message": message}}, status_code=status)


def not_found() -> JSONResponse:
    return JSONResponse(NOT_FOUND, status_code=404)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class AgsPlatform:
    """Access tokens, line items and results: the platform's side of LTI Advantage services."""

    def __init__(self, emu: CanvasEmulator, platform: LtiPlatform, mark_dirty: Callable[[], None]) -> None:
        self.emu = emu
        self.platform = platform
        self.mark_dirty = mark_dirty
        lti = emu.state.setdefault("lti", {})
        for name in ("access_tokens", "used_jtis", "line_items", "results"):
            lti.setdefault(name, {})
        self._subjects: dict[str, int] = {}

    @property
    def lti(self) -> dict[str, Any]:
        return self.emu.state["lti"]

    # --- the token endpoint --------------------------------------------------------------------

    async def _public_keys(self, key: dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(key.get("public_jwk"), dict):
            return [key["public_jwk"]]
        url = key.get("public_jwk_url")
        if not url:
            return []
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        keys = response.json().get("keys")
        return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []

    async def issue_token(self, form: dict[str, str], token_url: str) -> JSONResponse:
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", "The grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return oauth_error("invalid_request", f"The client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        try:
            header = dict(jws.extract_compact(assertion.encode()).headers())
            unverified = json.loads(jws.extract_compact(assertion.encode()).payload)
        except (JoseError, ValueError, TypeError, UnicodeError):
            return oauth_error("invalid_request", "The client_assertion is not a JWT")
        client_id = str(unverified.get("sub") or "") if isinstance(unverified, dict) else ""
        key = self.platform.lti["developer_keys"].get(client_id)
        if key is None:
            return oauth_error("invalid_client", "unknown client", 401)
        if header.get("alg") != "RS256":
            return oauth_error("invalid_request", "The client_assertion must be signed with RS256")
        try:
            candidates = await self._public_keys(key)
        except (httpx.HTTPError, ValueError) as exc:
            return oauth_error("invalid_request", f"The developer key's public JWK URL could not be read ({exc!r})")
        kid = header.get("kid")
        chosen = [k for k in candidates if k.get("kid") == kid] or [k for k in candidates if not k.get("kid")]
        claims: dict[str, Any] | None = None
        for candidate in chosen:
            try:
                claims = dict(jwt.decode(assertion, RSAKey.import_key(candidate), algorithms=["RS256"]).claims)
                break
            except (BadSignatureError, JoseError, ValueError, TypeError):
                continue
        if claims is None:
            return oauth_error("invalid_request", "JWS signature invalid.")
        problem = self._assertion_problem(claims, client_id, token_url)
        if problem:
            return oauth_error("invalid_request", problem)
        self.lti["used_jtis"][str(claims["jti"])] = int(claims["exp"])
        wanted = (form.get("scope") or "").split()
        granted = [s for s in dict.fromkeys(wanted) if s in key.get("scopes", [])]
        if not granted:
            return oauth_error("invalid_scope", "None of the requested scopes are on the developer key: "
                                                + (" ".join(wanted) or "(none requested)"))
        token = secrets.token_urlsafe(32)
        self.lti["access_tokens"][token] = {"client_id": client_id, "scopes": granted,
                                            "expires_at": time.time() + TOKEN_SECONDS}
        self.mark_dirty()
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                             "scope": " ".join(granted)})

    def _assertion_problem(self, claims: dict[str, Any], client_id: str, token_url: str) -> str | None:
        now = time.time()
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if claims.get("iss") != client_id:
            return "the 'iss' must be the developer key's client id"
        if token_url not in audiences:
            return f"the 'aud' must include {token_url}"
        exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
        if exp is None or exp <= now:
            return "the 'exp' is missing or in the past"
        if iat is None or iat > now + LEEWAY:
            return "the 'iat' is missing or in the future"
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            return "the 'jti' is missing"
        used = self.lti["used_jtis"]
        for old, expires in list(used.items()):
            if expires < now - LEEWAY:
                del used[old]
        if jti in used:
            return "the 'jti' was already used"
        return None

    def grant(self, request: Request, scopes: tuple[str, ...]) -> dict[str, Any] | JSONResponse:
        """The access token's grant, or the 401 Canvas answers."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            return service_error("Missing access token")
        grant = self.lti["access_tokens"].get(header[7:].strip())
        if grant is None:
            return service_error("Invalid access token")
        if grant["expires_at"] < time.time():
            return service_error("Access token expired")
        if grant["client_id"] not in self.platform.lti["developer_keys"]:
            return service_error("Unknown or inactive Developer Key")
        if not set(scopes) & set(grant["scopes"]):
            return service_error("Insufficient permissions")
        return grant

    # --- line items -----------------------------------------------------------------------------

    def user_of(self, user_id: Any) -> dict[str, Any] | None:
        """A user by LTI id (``sub``) or Canvas id."""
        text = str(user_id or "")
        users = self.emu.state["users"]
        if len(self._subjects) != len(users):
            self._subjects = {self.platform.subject(u): u["id"] for u in users.values()}
        if text in self._subjects:
            return users.get(str(self._subjects[text]))
        return users.get(text)

    def line_item_url(self, base: str, item: dict[str, Any]) -> str:
        return f"{base}api/lti/courses/{item['course_id']}/line_items/{item['id']}"

    def assignment_of(self, item: dict[str, Any]) -> dict[str, Any] | None:
        assignment = self.emu.state["assignments"].get(str(item["assignment_id"]))
        return assignment if assignment is not None and assignment["course_id"] == item["course_id"] else None

    def line_items_of(self, course: dict[str, Any], client_id: str) -> list[dict[str, Any]]:
        return sorted((i for i in self.lti["line_items"].values()
                       if i["course_id"] == course["id"] and i["client_id"] == client_id and self.assignment_of(i)),
                      key=lambda i: i["id"])

    def find_line_item(self, course: dict[str, Any], item_id: str, client_id: str) -> dict[str, Any] | None:
        item = self.lti["line_items"].get(item_id)
        if item is None or item["course_id"] != course["id"] or item["client_id"] != client_id:
            return None
        return item if self.assignment_of(item) is not None else None

    def line_item_json(self, base: str, item: dict[str, Any]) -> dict[str, Any]:
        assignment = self.assignment_of(item) or {}
        body = {"id": self.line_item_url(base, item), "scoreMaximum": assignment.get("points_possible"),
                "label": assignment.get("name"), "resourceId": item.get("resource_id"), "tag": item.get("tag"),
                "resourceLinkId": item.get("resource_link_id"), "startDateTime": assignment.get("unlock_at"),
                "endDateTime": assignment.get("due_at")}
        return {k: v for k, v in body.items() if v is not None}

    def check_line_item(self, body: dict[str, Any], creating: bool) -> tuple[dict[str, Any], JSONResponse | None]:
        """The assignment fields a line item body sets, or the refusal."""
        fields: dict[str, Any] = {}
        for name in ("label", "scoreMaximum"):
            if creating and (name not in body or body[name] in (None, "")):
                return fields, service_error(f"param is missing or the value is empty: {name}", 400, "bad_request")
        if "label" in body:
            label = str(body["label"] or "").strip()
            if not label:
                return fields, service_error("param is missing or the value is empty: label", 400, "bad_request")
            if len(label) > TITLE_MAX:
                return fields, JSONResponse({"errors": {"title": [{
                    "attribute": "title", "type": "too_long",
                    "message": f"is too long (maximum is {TITLE_MAX} characters)"}]}}, status_code=422)
            fields["name"] = label
        if "scoreMaximum" in body:
            maximum = _number(body["scoreMaximum"])
            if maximum is None or maximum < 0:
                return fields, service_error("scoreMaximum must be a number greater than or equal to 0", 400,
                                             "bad_request")
            fields["points_possible"] = maximum
        for name, target in (("startDateTime", "unlock_at"), ("endDateTime", "due_at")):
            if name in body:
                if body[name] in (None, ""):
                    fields[target] = None
                    continue
                parsed = _parse_time(body[name])
                if parsed is None:
                    return fields, service_error(f"Invalid {name}: {body[name]}", 400, "bad_request")
                fields[target] = _canvas_time(parsed)
        return fields, None

    def create_line_item(self, course: dict[str, Any], client_id: str, body: dict[str, Any],
                         fields: dict[str, Any]) -> dict[str, Any]:
        groups = sorted((g for g in self.emu.state["assignment_groups"].values() if g["course_id"] == course["id"]),
                        key=lambda g: (g.get("position", 0), g["id"]))
        assignment_id = self.emu.new_id()
        stamp = _canvas_time(datetime.now(UTC))
        self.emu.state["assignments"][str(assignment_id)] = {
            "id": assignment_id, "course_id": course["id"], "name": fields["name"], "description": None,
            "created_at": stamp, "updated_at": stamp, "due_at": fields.get("due_at"),
            "unlock_at": fields.get("unlock_at"), "lock_at": None, "points_possible": fields["points_possible"],
            "grading_type": "points", "assignment_group_id": groups[0]["id"] if groups else None,
            "post_to_sis": False, "published": True, "only_visible_to_overrides": False,
            "omit_from_final_grade": False, "grading_standard_id": None, "position": assignment_id,
            "submission_types": ["none"], "integration_id": None, "integration_data": {}, "sis_assignment_id": None,
            "due_date_required": False, "max_name_length": TITLE_MAX, "overrides": [],
        }
        item = {"id": self.emu.new_id(), "course_id": course["id"], "assignment_id": assignment_id,
                "client_id": client_id, "resource_id": body.get("resourceId"), "tag": body.get("tag"),
                "resource_link_id": body.get("resourceLinkId"), "created_at": stamp}
        self.lti["line_items"][str(item["id"])] = item
        self.mark_dirty()
        return item

    def update_line_item(self, item: dict[str, Any], body: dict[str, Any], fields: dict[str, Any]) -> None:
        assignment = self.assignment_of(item)
        assert assignment is not None
        assignment.update(fields)
        assignment["updated_at"] = _canvas_time(datetime.now(UTC))
        for name, key in (("resourceId", "resource_id"), ("tag", "tag")):
            if name in body:
                item[key] = body[name]
        self.mark_dirty()

    def delete_line_item(self, item: dict[str, Any]) -> None:
        assignment_id = item["assignment_id"]
        self.emu.state["assignments"].pop(str(assignment_id), None)
        for key in [k for k, s in self.emu.state["submissions"].items() if s["assignment_id"] == assignment_id]:
            del self.emu.state["submissions"][key]
        for key in [k for k, r in self.lti["results"].items() if r["line_item_id"] == item["id"]]:
            del self.lti["results"][key]
        del self.lti["line_items"][str(item["id"])]
        self.mark_dirty()

    # --- scores and results ---------------------------------------------------------------------

    def is_student(self, course: dict[str, Any], user: dict[str, Any]) -> bool:
        return any(e["user_id"] == user["id"] and e["type"] == "StudentEnrollment"
                   and e.get("enrollment_state") in ("active", "invited")
                   for e in self.emu.student_enrollments(course["id"]))

    def effective(self, result: dict[str, Any]) -> tuple[float | None, datetime]:
        """The result's score and update time, a teacher's later grade in Canvas taken in."""
        item = self.lti["line_items"].get(str(result["line_item_id"]))
        submission = self.emu.state["submissions"].get(f"{item['assignment_id']}:{result['user_id']}") if item else None
        score = result.get("result_score")
        updated = _parse_time(result["updated_at"]) or datetime.now(UTC)
        current = submission.get("score") if submission else None
        if current != result.get("submission_score"):
            score = current
            graded = _parse_time((submission or {}).get("graded_at"))
            updated = max(updated, graded) if graded else updated
        return score, updated

    def result_json(self, base: str, item: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        user = self.emu.state["users"].get(str(result["user_id"])) or {"id": result["user_id"]}
        score, _ = self.effective(result)
        url = self.line_item_url(base, item)
        body = {"id": f"{url}/results/{result['id']}", "scoreOf": url, "userId": self.platform.subject(user),
                "resultScore": score, "resultMaximum": result.get("result_maximum"), "comment": result.get("comment")}
        return {k: v for k, v in body.items() if v is not None}

    def score(self, base: str, course: dict[str, Any], item: dict[str, Any], body: dict[str, Any]) -> JSONResponse:
        for name in ("userId", "activityProgress", "gradingProgress", "timestamp"):
            if body.get(name) in (None, ""):
                return service_error(f"param is missing or the value is empty: {name}", 400, "bad_request")
        user = self.user_of(body["userId"])
        if user is None or not self.is_student(course, user):
            return service_error("User not found in course or is not a student", 422, "unprocessable_entity")
        if body["activityProgress"] not in ACTIVITY:
            return service_error(f"Invalid activityProgress: {body['activityProgress']}", 400, "bad_request")
        if body["gradingProgress"] not in GRADING:
            return service_error(f"Invalid gradingProgress: {body['gradingProgress']}", 400, "bad_request")
        stamp = _parse_time(body["timestamp"])
        if stamp is None:
            return service_error(f"Provided timestamp of {body['timestamp']} not a valid timestamp", 400,
                                 "bad_request")
        key = f"{item['id']}:{user['id']}"
        result = self.lti["results"].get(key)
        if result is not None:
            _, last = self.effective(result)
            if last > stamp:
                return service_error(f"Provided timestamp of {body['timestamp']} before last updated timestamp of "
                                     f"{last.isoformat(timespec='milliseconds')}", 400, "bad_request")
        given = None if body.get("scoreGiven") is None else _number(body["scoreGiven"])
        maximum = None if body.get("scoreMaximum") is None else _number(body["scoreMaximum"])
        if body.get("scoreGiven") is not None:
            if body.get("scoreMaximum") is None:
                return service_error("ScoreMaximum must be present if ScoreGiven is present", 412,
                                     "precondition_failed")
            if given is None or given < 0:
                return service_error("ScoreGiven must be greater than or equal to 0", 422, "unprocessable_entity")
        if body.get("scoreMaximum") is not None and (maximum is None or maximum < 0):
            return service_error("ScoreMaximum must be greater than or equal to 0", 422, "unprocessable_entity")
        assignment = self.assignment_of(item)
        assert assignment is not None
        if result is None:
            result = {"id": self.emu.new_id(), "line_item_id": item["id"], "user_id": user["id"], "result_score": None,
                      "result_maximum": None, "submission_score": None}
            self.lti["results"][key] = result
        result.update(activity_progress=body["activityProgress"], grading_progress=body["gradingProgress"],
                      comment=body.get("comment") or None)
        if body["gradingProgress"] in GRADED:
            result.update(result_score=given, result_maximum=maximum if given is not None else None)
            self._grade(assignment, user["id"], given, maximum)
        submission = self.emu.state["submissions"].get(f"{assignment['id']}:{user['id']}")
        result["submission_score"] = submission.get("score") if submission else None
        result["updated_at"] = _iso(datetime.now(UTC))
        self.mark_dirty()
        return JSONResponse({"resultUrl": f"{self.line_item_url(base, item)}/results/{result['id']}"})

    def _grade(self, assignment: dict[str, Any], user_id: int, points: float | None, maximum: float | None) -> None:
        """Set the submission's grade as a score from the tool does (or remove it)."""
        from passback.emulators.canvas import percent_to_letter

        submission = dict(self.emu.submission(assignment, user_id))
        stamp = _canvas_time(datetime.now(UTC))
        if points is None:
            submission.update(score=None, grade=None, entered_score=None, entered_grade=None, graded_at=None,
                              workflow_state="submitted" if submission.get("submitted_at") else "unsubmitted")
        else:
            possible = assignment.get("points_possible")
            score = points * possible / maximum if maximum and possible is not None else points
            grading = assignment.get("grading_type")
            if grading == "pass_fail":
                score = (possible or 0.0) if points > 0 else 0.0
                grade = "complete" if points > 0 else "incomplete"
            elif grading == "percent":
                grade = f"{round(score / possible * 100, 2) if possible else 0:g}%"
            elif grading == "letter_grade":
                grade = percent_to_letter(score / possible * 100 if possible else 0.0,
                                          self.emu.grading_scheme(assignment))
            else:
                grade = f"{round(score, 2):g}"
            score = round(score, 6)
            submission.update(score=score, grade=grade, entered_score=score, entered_grade=grade, graded_at=stamp,
                              posted_at=stamp, workflow_state="graded", grader_id=None, excused=False,
                              grade_matches_current_submission=True, missing=False)
        self.emu.state["submissions"][f"{assignment['id']}:{user_id}"] = submission

    # --- names and roles ------------------------------------------------------------------------

    def members(self, course: dict[str, Any], key: dict[str, Any]) -> list[dict[str, Any]]:
        by_user: dict[int, list[dict[str, Any]]] = {}
        for enrollment in sorted(self.emu.state["enrollments"].values(), key=lambda e: e["id"]):
            if enrollment["course_id"] == course["id"] and enrollment["type"] in ENROLLMENT_ROLES:
                by_user.setdefault(enrollment["user_id"], []).append(enrollment)
        privacy = key.get("privacy_level") or "anonymous"
        members = []
        for user_id, enrollments in sorted(by_user.items()):
            user = self.emu.state["users"].get(str(user_id))
            if user is None:
                continue
            active = any(e.get("enrollment_state") in ("active", "invited") for e in enrollments)
            roles = list(dict.fromkeys(r for e in enrollments for r in ENROLLMENT_ROLES[e["type"]]))
            member: dict[str, Any] = {"status": "Active" if active else "Inactive",
                                      "user_id": self.platform.subject(user), "roles": roles}
            if privacy in ("public", "name_only"):
                family, _, given = (user.get("sortable_name") or "").partition(", ")
                member.update(name=user.get("name"), given_name=given or None, family_name=family or None)
            if privacy in ("public", "email_only") and user.get("email"):
                member["email"] = user["email"]
            if privacy == "public" and user.get("sis_user_id"):
                member["lis_person_sourcedid"] = user["sis_user_id"]
            members.append({k: v for k, v in member.items() if v is not None})
        return members


def _page(request: Request, items: list[Any], url: str) -> tuple[list[Any], str]:
    """Canvas's paging of the services: ``limit`` (or ``per_page``) and ``page``, one ``Link`` header."""
    params = request.query_params
    try:
        size = min(max(int(params.get("limit") or params.get("per_page") or 10), 1), 100)
        page = max(int(params.get("page") or 1), 1)
    except ValueError:
        size, page = 10, 1
    chunk = items[(page - 1) * size : page * size]
    kept = [(k, v) for k, v in params.multi_items() if k not in ("page", "limit", "per_page")]
    last = max((len(items) + size - 1) // size, 1)

    def link(number: int, rel: str) -> str:
        return f'<{url}?{urlencode(kept + [("page", str(number)), ("per_page", str(size))])}>; rel="{rel}"'

    links = [link(page, "current")]
    if page < last:
        links.append(link(page + 1, "next"))
    if page > 1:
        links.append(link(page - 1, "prev"))
    links += [link(1, "first"), link(last, "last")]
    return chunk, ",".join(links)


async def _json_body(request: Request) -> dict[str, Any]:
    if "json" not in request.headers.get("content-type", ""):
        return {}
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def ags_routes(emu: CanvasEmulator, platform: LtiPlatform, mark_dirty: Callable[[], None]) -> list[BaseRoute]:
    """The token endpoint and the services, counted and faulted like every route of the emulator."""
    ags = AgsPlatform(emu, platform, mark_dirty)

    def counted(path: str, handler: Callable[[Request], Any], methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            emu.requests[f"{request.method} {path}"] += 1
            response: Response = await handler(request)
            return response

        return Route(path, endpoint, methods=methods)

    def base(request: Request) -> str:
        return str(request.base_url)

    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        return await ags.issue_token(form, base(request).rstrip("/") + TOKEN_PATH)

    async def line_items(request: Request) -> Response:
        scopes = READ_LINEITEM_SCOPES if request.method == "GET" else LINEITEM_SCOPES
        grant = ags.grant(request, scopes)
        if isinstance(grant, Response):
            return grant
        course = emu.course(request.path_params["course_id"])
        if course is None:
            return not_found()
        if request.method == "POST":
            body = await _json_body(request)
            fields, refusal = ags.check_line_item(body, creating=True)
            if refusal is not None:
                return refusal
            item = ags.create_line_item(course, grant["client_id"], body, fields)
            return JSONResponse(ags.line_item_json(base(request), item), media_type=LINEITEM)
        query = request.query_params
        rows = [i for i in ags.line_items_of(course, grant["client_id"])
                if all(query.get(param) is None or str(i.get(field)) == query.get(param)
                       for param, field in (("resource_id", "resource_id"), ("tag", "tag"),
                                            ("resource_link_id", "resource_link_id")))]
        url = f"{base(request)}api/lti/courses/{course['id']}/line_items"
        chunk, link = _page(request, [ags.line_item_json(base(request), i) for i in rows], url)
        return JSONResponse(chunk, media_type=LINEITEMS, headers={"Link": link})

    def located(request: Request, grant: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        course = emu.course(request.path_params["course_id"])
        if course is None:
            return None
        item = ags.find_line_item(course, request.path_params["item_id"], grant["client_id"])
        return None if item is None else (course, item)

    async def line_item(request: Request) -> Response:
        grant = ags.grant(request, READ_LINEITEM_SCOPES if request.method == "GET" else LINEITEM_SCOPES)
        if isinstance(grant, Response):
            return grant
        found = located(request, grant)
        if found is None:
            return not_found()
        _, item = found
        if request.method == "DELETE":
            ags.delete_line_item(item)
            return Response(status_code=204)
        if request.method == "PUT":
            body = await _json_body(request)
            fields, refusal = ags.check_line_item(body, creating=False)
            if refusal is not None:
                return refusal
            ags.update_line_item(item, body, fields)
        return JSONResponse(ags.line_item_json(base(request), item), media_type=LINEITEM)

    async def scores(request: Request) -> Response:
        grant = ags.grant(request, SCORE_SCOPES)
        if isinstance(grant, Response):
            return grant
        found = located(request, grant)
        if found is None:
            return not_found()
        course, item = found
        return ags.score(base(request), course, item, await _json_body(request))

    async def results(request: Request) -> Response:
        grant = ags.grant(request, RESULT_SCOPES)
        if isinstance(grant, Response):
            return grant
        found = located(request, grant)
        if found is None:
            return not_found()
        _, item = found
        rows = sorted((r for r in ags.lti["results"].values() if r["line_item_id"] == item["id"]),
                      key=lambda r: r["id"])
        wanted = request.query_params.get("user_id")
        if wanted:
            user = ags.user_of(wanted)
            rows = [r for r in rows if user is not None and r["user_id"] == user["id"]]
        result_id = request.path_params.get("result_id")
        if result_id is not None:
            one = next((r for r in rows if str(r["id"]) == result_id), None)
            if one is None:
                return not_found()
            return JSONResponse(ags.result_json(base(request), item, one), media_type=RESULT)
        url = f"{ags.line_item_url(base(request), item)}/results"
        chunk, link = _page(request, [ags.result_json(base(request), item, r) for r in rows], url)
        return JSONResponse(chunk, media_type=RESULTS, headers={"Link": link})

    async def names_and_roles(request: Request) -> Response:
        grant = ags.grant(request, NRPS_SCOPES)
        if isinstance(grant, Response):
            return grant
        course = emu.course(request.path_params["course_id"])
        if course is None:
            return not_found()
        key = platform.lti["developer_keys"][grant["client_id"]]
        members = ags.members(course, key)
        role = request.query_params.get("role")
        if role:
            members = [m for m in members if role in m["roles"] or any(r.endswith("#" + role) for r in m["roles"])]
        url = f"{base(request)}api/lti/courses/{course['id']}/names_and_roles"
        chunk, link = _page(request, members, url)
        next_only = ",".join(part for part in link.split(",") if 'rel="next"' in part)
        body = {"id": url, "context": {"id": _hex_id("course", course["id"]), "label": course.get("course_code"),
                                       "title": course.get("name")}, "members": chunk}
        return JSONResponse(body, media_type=MEMBERSHIPS, headers={"Link": next_only} if next_only else None)

    items = "/api/lti/courses/{course_id}/line_items"
    one = items + "/{item_id}"
    return [
        counted(TOKEN_PATH, token, ["POST"]),
        counted(items, line_items, ["GET", "POST"]),
        counted(one, line_item, ["GET", "PUT", "DELETE"]),
        counted(one + "/scores", scores, ["POST"]),
        counted(one + "/results", results, ["GET"]),
        counted(one + "/results/{result_id}", results, ["GET"]),
        counted("/api/lti/courses/{course_id}/names_and_roles", names_and_roles, ["GET"]),
    ]
