"""The Canvas emulator's Live Events: change events posted, signed, to the subscriptions' HTTPS endpoints.

Contract (canvas-lms ``lib/canvas/live_events.rb`` and the event catalogue in
``doc/api/data_services/json/canvas/event-types``; Instructure's "Live Events: HTTPS
delivery" guide):

* Each event is ``{"metadata": {...}, "body": {...}}`` in the Canvas format. ``metadata``
  carries ``event_name``, ``event_time`` (ISO 8601 with milliseconds, UTC), ``producer``
  ``canvas``, the context (``context_type`` ``Course``, ``context_id``,
  ``context_account_id``, ``context_sis_source_id``, ``context_role``), the root account
  (``root_account_id``, ``root_account_uuid``, ``root_account_lti_guid``), who and where
  (``user_id``, ``user_login``, ``user_sis_id``, ``user_account_id``, ``hostname``,
  ``http_method``, ``url``, ``referrer``, ``request_id``, ``session_id``,
  ``user_agent``, ``client_ip``, ``time_zone``). Ids are strings and *global*
  (``shard * 10^13 + id``; the emulator is shard 1), as Canvas's are.
* ``grade_change`` (a grade or score changed): ``submission_id``, ``assignment_id``,
  ``assignment_name``, ``grade``, ``old_grade``, ``score``, ``old_score``,
  ``points_possible``, ``old_points_possible``, ``grader_id``, ``student_id``,
  ``student_sis_id``, ``user_id``, ``grading_complete``, ``muted``.
* ``submission_updated`` (any change of a submission): ``submission_id``,
  ``assignment_id``, ``user_id``, ``submitted_at``, ``lti_user_id``, ``graded_at``,
  ``updated_at``, ``score``, ``grade``, ``submission_type``, ``body``, ``url``,
  ``attempt``, ``late``, ``missing``, ``lti_assignment_id``, ``group_id``, ``posted_at``,
  ``workflow_state``.
* ``assignment_created`` / ``assignment_updated``: ``anonymous_grading``,
  ``assignment_group_id``, ``assignment_id``, ``assignment_id_duplicated_from``,
  ``context_id``, ``context_type``, ``context_uuid``, ``created_on_blueprint_sync``,
  ``description``, ``due_at``, ``lti_assignment_description``, ``lti_assignment_id``,
  ``lti_resource_link_id``, ``lti_resource_link_id_duplicated_from``, ``lock_at``,
  ``points_possible``, ``resource_map``, ``submission_types`` (comma separated),
  ``title``, ``unlock_at``, ``updated_at``, ``workflow_state``, ``domain``. Canvas
  deletes an assignment softly, so a deletion is an ``assignment_updated`` whose
  ``workflow_state`` is ``deleted``.
* Delivery: one POST per event and subscription, in the background (the request that made
  the change is answered first). A signed subscription's body is a compact JWS, RS256, its
  header naming the key (``kid``), its claims the event (``Content-Type:
  application/jwt``); an unsigned one's body is the event's JSON. A delivery answered
  other than 2xx (or not answered) is tried again, up to the subscription's
  ``max_attempts``, later and so possibly after events that happened after it.

Control (never faulted; ``/_emulator/...``):

* ``POST /_emulator/live_events/subscriptions`` ``{"url", "signed": true, "events": [...],
  "max_attempts": 3}`` subscribes an endpoint (all five event names when ``events`` is
  absent); ``GET`` lists them; ``DELETE /_emulator/live_events/subscriptions/{id}``.
* ``POST /_emulator/live_events/rotate`` ``{"keep_previous": true}``: a new signing key
  (new ``kid``) signs from now on; the JWKS lists it, and the previous key too while
  ``keep_previous`` (a grace period, as Instructure publishes the previous key).
* ``GET /_emulator/live_events/deliveries``: every delivery tried (subscription, event
  name, kid, status, attempt; no event content) and how many are still ``pending``.

The publisher's JWKS is ``GET /live_events/jwks`` (no token: Instructure publishes it
outside Canvas, so it is not under ``/api``); faults and latency apply to it as to any
request that is not a control path.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from passback.emulators.webhooks import Delivery, Outbox, Publisher, subscription_routes

if TYPE_CHECKING:
    from passback.emulators.canvas import CanvasEmulator

JWKS_PATH = "/live_events/jwks"
SHARD = 1
SHARD_FACTOR = 10**13
EVENT_NAMES = ("grade_change", "submission_updated", "assignment_created", "assignment_updated")
TIME_ZONE = "America/Chicago"


def global_id(local: Any) -> str | None:
    """Canvas's global id of a local id on the emulator's shard, as a string (Live Events stringify ids)."""
    if local is None:
        return None
    return str(SHARD * SHARD_FACTOR + int(local))


def event_time() -> str:
    """Now, as Live Events stamp ``event_time``: ISO 8601, milliseconds, UTC."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _hex(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()  # an opaque id, not a secret


@dataclass(frozen=True)
class Origin:
    """The request that made the change: what Canvas puts in an event's metadata about who and where."""

    hostname: str
    http_method: str
    url: str
    request_id: str
    user_agent: str | None
    client_ip: str | None
    user_id: int | None

    @classmethod
    def of(cls, request: Request, user_id: int | None) -> Origin:
        return cls(hostname=request.url.netloc, http_method=request.method, url=str(request.url),
                   request_id=str(uuid.uuid4()), user_agent=request.headers.get("user-agent"),
                   client_ip=request.client.host if request.client else None, user_id=user_id)


class LiveEventsPublisher(Publisher):
    """Signing keys, subscriptions, the events' payloads and their delivery (a background task).

    The keys and subscriptions are kept in the emulator's state (``state["live_events"]``),
    so a restarted emulator signs with the same key; the delivery log is in memory.
    """

    def __init__(self, emu: CanvasEmulator, mark_dirty: Callable[[], None]) -> None:
        self.emu = emu
        self.mark_dirty = mark_dirty
        state = emu.state.setdefault("live_events", {})
        state.setdefault("keys", [])
        state.setdefault("published", 1)
        state.setdefault("subscriptions", {})
        state.setdefault("next_subscription", 1)
        if not state["keys"]:
            self._add_key()
        self.emitted: deque[dict[str, Any]] = deque(maxlen=10_000)  # the events made, newest last (tests replay them)
        self.outbox = Outbox(lambda: self.emu.state["live_events"]["subscriptions"], "canvas-live-events")
        self._imported: dict[str, RSAKey] = {}  # importing a private JWK checks the key (tens of ms): once per key

    @property
    def state(self) -> dict[str, Any]:
        return self.emu.state["live_events"]

    # --- keys ------------------------------------------------------------------------------------------

    def _add_key(self) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
        self.state["keys"].append(key.as_dict(private=True))
        self.mark_dirty()
        return key

    def _imported_key(self, private: dict[str, Any]) -> RSAKey:
        kid = str(private["kid"])
        if kid not in self._imported:
            self._imported[kid] = RSAKey.import_key(private)
        return self._imported[kid]

    @property
    def key(self) -> RSAKey:
        return self._imported_key(self.state["keys"][-1])

    @property
    def kid(self) -> str:
        return str(self.state["keys"][-1]["kid"])

    def rotate(self, keep_previous: bool = True) -> dict[str, Any]:
        """A new signing key from now on; the previous one stays published while ``keep_previous``."""
        previous = self.kid
        self._add_key()
        self.state["published"] = 2 if keep_previous else 1
        self.mark_dirty()
        return {"kid": self.kid, "previous": previous, "published": [k["kid"] for k in self.jwks()["keys"]]}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for private in self.state["keys"][-int(self.state["published"]):]:
            public = self._imported_key(private).as_dict(private=False)
            public.update(kid=private["kid"], use="sig", alg="RS256")
            keys.append(public)
        return {"keys": keys}

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, kid: str | None = None) -> str:
        """An RS256 JWT of ``claims`` with the current key, unless another is given (tests forge with it)."""
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}, claims, key or self.key)

    # --- subscriptions -------------------------------------------------------------------------------

    def subscribe(self, values: dict[str, Any]) -> dict[str, Any]:
        url = str(values.get("url") or "")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"A subscription needs an http(s) url, not {url!r}")
        events = values.get("events")
        if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
            raise ValueError("events must be a list of event names")
        attempts = int(values.get("max_attempts", 3))
        if attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        subscription_id = str(self.state["next_subscription"])
        self.state["next_subscription"] += 1
        subscription = {"id": subscription_id, "url": url, "signed": bool(values.get("signed", True)),
                        "events": events, "max_attempts": attempts}
        self.state["subscriptions"][subscription_id] = subscription
        self.mark_dirty()
        return subscription

    def unsubscribe(self, subscription_id: str) -> bool:
        found = self.state["subscriptions"].pop(subscription_id, None)
        self.mark_dirty()
        return found is not None

    # --- payloads --------------------------------------------------------------------------------------

    def metadata(self, name: str, course: dict[str, Any], origin: Origin) -> dict[str, Any]:
        users = self.emu.state["users"]
        user = users.get(str(origin.user_id)) if origin.user_id is not None else None
        role = next((e["type"] for e in self.emu.state["enrollments"].values()
                     if e["course_id"] == course["id"] and e["user_id"] == origin.user_id), None)
        root_uuid = _hex("root_account", 1)[:40]
        return {
            "client_ip": origin.client_ip,
            "context_account_id": global_id(course.get("account_id") or 1),
            "context_id": global_id(course["id"]),
            "context_role": role,
            "context_sis_source_id": course.get("sis_course_id"),
            "context_type": "Course",
            "event_name": name,
            "event_time": event_time(),
            "hostname": origin.hostname,
            "http_method": origin.http_method,
            "producer": "canvas",
            "referrer": None,
            "request_id": origin.request_id,
            "root_account_id": global_id(1),
            "root_account_lti_guid": f"{root_uuid}.{origin.hostname.split(':')[0]}",
            "root_account_uuid": root_uuid,
            "session_id": None,
            "time_zone": course.get("time_zone") or TIME_ZONE,
            "url": origin.url,
            "user_account_id": global_id(1),
            "user_agent": origin.user_agent,
            "user_id": global_id(origin.user_id),
            "user_login": user.get("login_id") if user else None,
            "user_sis_id": user.get("sis_user_id") if user else None,
        }

    def grade_change_body(self, assignment: dict[str, Any], old: dict[str, Any], new: dict[str, Any],
                          grader_id: int | None) -> dict[str, Any]:
        student = self.emu.state["users"].get(str(new["user_id"])) or {}
        return {
            "submission_id": global_id(new["id"]),
            "assignment_id": global_id(assignment["id"]),
            "assignment_name": assignment.get("name"),
            "grade": new.get("grade"),
            "old_grade": old.get("grade"),
            "score": new.get("score"),
            "old_score": old.get("score"),
            "points_possible": assignment.get("points_possible"),
            "old_points_possible": assignment.get("points_possible"),
            "grader_id": global_id(grader_id),
            "student_id": global_id(new["user_id"]),
            "student_sis_id": student.get("sis_user_id"),
            "user_id": global_id(new["user_id"]),
            "grading_complete": new.get("workflow_state") == "graded",
            "muted": new.get("posted_at") is None,
        }

    def submission_body(self, assignment: dict[str, Any], submission: dict[str, Any]) -> dict[str, Any]:
        return {
            "submission_id": global_id(submission["id"]),
            "assignment_id": global_id(assignment["id"]),
            "user_id": global_id(submission["user_id"]),
            "submitted_at": submission.get("submitted_at"),
            "lti_user_id": None,
            "graded_at": submission.get("graded_at"),
            "updated_at": submission.get("graded_at") or submission.get("submitted_at") or event_time(),
            "score": submission.get("score"),
            "grade": submission.get("grade"),
            "submission_type": submission.get("submission_type"),
            "body": None,
            "url": None,
            "attempt": submission.get("attempt"),
            "late": bool(submission.get("late")),
            "missing": bool(submission.get("missing")),
            "lti_assignment_id": _lti_assignment_id(assignment),
            "group_id": None,
            "posted_at": submission.get("posted_at"),
            "workflow_state": submission.get("workflow_state"),
        }

    def assignment_body(self, assignment: dict[str, Any], hostname: str, workflow_state: str | None = None) -> dict[str, Any]:
        types = assignment.get("submission_types") or []
        state = workflow_state or ("published" if assignment.get("published") else "unpublished")
        return {
            "anonymous_grading": False,
            "assignment_group_id": global_id(assignment.get("assignment_group_id")),
            "assignment_id": global_id(assignment["id"]),
            "assignment_id_duplicated_from": None,
            "context_id": global_id(assignment["course_id"]),
            "context_type": "Course",
            "context_uuid": _hex("course", assignment["course_id"])[:40],
            "created_on_blueprint_sync": False,
            "description": assignment.get("description"),
            "due_at": assignment.get("due_at"),
            "lti_assignment_description": assignment.get("description"),
            "lti_assignment_id": _lti_assignment_id(assignment),
            "lti_resource_link_id": _hex("resource_link", assignment["id"])[:40],
            "lti_resource_link_id_duplicated_from": None,
            "lock_at": assignment.get("lock_at"),
            "points_possible": assignment.get("points_possible"),
            "resource_map": None,
            "submission_types": ",".join(types) if isinstance(types, list) else str(types),
            "title": assignment.get("name"),
            "unlock_at": assignment.get("unlock_at"),
            "updated_at": assignment.get("updated_at"),
            "workflow_state": state,
            "domain": hostname.split(":")[0],
        }

    # --- emitting and delivering --------------------------------------------------------------------

    def emit(self, name: str, course: dict[str, Any], body: dict[str, Any], origin: Origin) -> dict[str, Any]:
        """Queue the event for every subscription that wants it; the event (tests sign or replay it)."""
        event = {"metadata": self.metadata(name, course, origin), "body": body}
        self.emitted.append(event)
        for subscription in list(self.state["subscriptions"].values()):
            if subscription["events"] is not None and name not in subscription["events"]:
                continue
            if subscription["signed"]:
                kid = self.kid
                item = Delivery(subscription["id"], self.sign(event).encode(), {"Content-Type": "application/jwt"},
                                {"event_name": name, "kid": kid})
            else:
                item = Delivery(subscription["id"], _json_bytes(event), {"Content-Type": "application/json"},
                                {"event_name": name, "kid": None})
            self.outbox.put(item)
        return event

    def emit_grade(self, course: dict[str, Any], assignment: dict[str, Any], old: dict[str, Any],
                   new: dict[str, Any], origin: Origin) -> None:
        """What Canvas emits when a teacher saves a submission: ``grade_change`` when the grade or score moved,
        and ``submission_updated`` always."""
        if (old.get("score"), old.get("grade"), bool(old.get("excused"))) != (
                new.get("score"), new.get("grade"), bool(new.get("excused"))):
            self.emit("grade_change", course, self.grade_change_body(assignment, old, new, origin.user_id), origin)
        self.emit("submission_updated", course, self.submission_body(assignment, new), origin)

    def listed(self) -> list[dict[str, Any]]:
        return list(self.state["subscriptions"].values())


def _lti_assignment_id(assignment: dict[str, Any]) -> str:
    return str(uuid.UUID(_hex("lti_assignment", assignment["id"])[:32]))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def live_event_routes(publisher: LiveEventsPublisher) -> tuple[list[BaseRoute], list[BaseRoute]]:
    """The JWKS (faulted like any request) and the control routes (never faulted)."""

    async def jwks(request: Request) -> Response:
        publisher.emu.requests[f"GET {JWKS_PATH}"] += 1
        return JSONResponse(publisher.jwks())

    async def rotate(request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        return JSONResponse(publisher.rotate(keep_previous=bool((body or {}).get("keep_previous", True))))

    public: list[BaseRoute] = [Route(JWKS_PATH, jwks, methods=["GET"])]
    control: list[BaseRoute] = [*subscription_routes("/_emulator/live_events", publisher),
                                Route("/_emulator/live_events/rotate", rotate, methods=["POST"])]
    return public, control
