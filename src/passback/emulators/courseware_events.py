"""The courseware emulator's change events: posted, HMAC-signed, to the subscriptions' URLs.

The courseware's own design (CourseArc's is not public), written down as the contract
passback's ``/events/courseware`` speaks:

* Each event is a JSON object: ``id`` (unique; a redelivery carries the same id and the
  same bytes), ``name``, ``occurred_at`` (ISO 8601, milliseconds, UTC), ``course_id`` and
  the ids of what changed. Only ids: never a student's name, a score or a title.

  - ``score_changed``: a student's course score may have moved: an attempt was recorded
    (``student_id``, ``activity_id``, ``attempt_id``) or a page was completed for the first
    time (``student_id``, ``page_id``).
  - ``activity_changed``: an activity was added or its points changed (``activity_id``,
    ``page_id``).
  - ``page_changed``: a page's points changed (``page_id``): every score of the course that
    completed it moves.

* Delivery: one POST per event and subscription, in the background (the request that made
  the change is answered first), ``Content-Type: application/json``, the header
  ``X-Courseware-Signature: sha256=<hex>`` being HMAC-SHA256 of the raw body under the
  subscription's secret. A delivery answered other than 2xx (or not answered) is tried
  again, up to the subscription's ``max_attempts`` (3), later and so possibly after events
  that happened after it.

Control (never faulted; ``/_emulator/...``): ``POST /_emulator/events/subscriptions``
``{"url", "secret", "events": [...], "max_attempts": 3}`` (every event name when ``events``
is absent; the answer and ``GET`` never show the secret); ``DELETE
/_emulator/events/subscriptions/{id}``; ``GET /_emulator/events/deliveries``: every delivery
tried (subscription, event id and name, status, attempt) and how many are ``pending``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.routing import BaseRoute

from passback.emulators.webhooks import Delivery, Outbox, Publisher, subscription_routes

SCORE_CHANGED, ACTIVITY_CHANGED, PAGE_CHANGED = "score_changed", "activity_changed", "page_changed"
EVENT_NAMES = (SCORE_CHANGED, ACTIVITY_CHANGED, PAGE_CHANGED)
SIGNATURE_HEADER = "X-Courseware-Signature"


def occurred_at() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def signature(secret: str, body: bytes) -> str:
    """The header's value: ``sha256=`` and the hex HMAC-SHA256 of the raw body under the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CoursewareEventsPublisher(Publisher):
    """Subscriptions (kept in the state, ``state["events"]``), the events made and their delivery."""

    def __init__(self, state: dict[str, Any], mark_dirty: Callable[[], None]) -> None:
        self.root = state
        self.mark_dirty = mark_dirty
        events = state.setdefault("events", {})
        events.setdefault("subscriptions", {})
        events.setdefault("next_subscription", 1)
        self.emitted: deque[dict[str, Any]] = deque(maxlen=10_000)  # newest last (tests replay them)
        self.outbox = Outbox(lambda: self.state["subscriptions"], "courseware-events")

    @property
    def state(self) -> dict[str, Any]:
        return self.root["events"]

    def subscribe(self, values: dict[str, Any]) -> dict[str, Any]:
        url, secret = str(values.get("url") or ""), values.get("secret")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"A subscription needs an http(s) url, not {url!r}")
        if not isinstance(secret, str) or not secret:
            raise ValueError("A subscription needs a secret to sign its events with")
        events = values.get("events")
        if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
            raise ValueError("events must be a list of event names")
        attempts = int(values.get("max_attempts", 3))
        if attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        subscription_id = str(self.state["next_subscription"])
        self.state["next_subscription"] += 1
        self.state["subscriptions"][subscription_id] = {"id": subscription_id, "url": url, "secret": secret,
                                                        "events": events, "max_attempts": attempts}
        self.mark_dirty()
        return self.shown(subscription_id)

    def shown(self, subscription_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.state["subscriptions"][subscription_id].items() if k != "secret"}

    def unsubscribe(self, subscription_id: str) -> bool:
        found = self.state["subscriptions"].pop(subscription_id, None)
        self.mark_dirty()
        return found is not None

    def emit(self, name: str, course_id: int, **ids: Any) -> dict[str, Any]:
        """Queue the event for every subscription that wants it; the event."""
        event = {"id": str(uuid.uuid4()), "name": name, "occurred_at": occurred_at(), "course_id": course_id,
                 **{k: v for k, v in ids.items() if v is not None}}
        self.emitted.append(event)
        body = json.dumps(event, separators=(",", ":")).encode()
        for subscription in list(self.state["subscriptions"].values()):
            if subscription["events"] is None or name in subscription["events"]:
                self.outbox.put(Delivery(
                    subscription["id"], body, {"Content-Type": "application/json",
                                               SIGNATURE_HEADER: signature(subscription["secret"], body)},
                    {"event_id": event["id"], "event_name": name}))
        return event

    def listed(self) -> list[dict[str, Any]]:
        return [self.shown(s) for s in self.state["subscriptions"]]


def event_routes(publisher: CoursewareEventsPublisher) -> list[BaseRoute]:
    """The control routes (never faulted)."""
    return subscription_routes("/_emulator/events", publisher)
