"""Courseware change events: verify what the courseware posts to ``/events/courseware``, keep it durably and once.

The courseware (seed 002's, :mod:`passback.emulators.courseware_events` documents its
contract) posts each change as JSON, ``{"id", "name", "occurred_at", "course_id", ...ids}``,
signed with HMAC-SHA256 of the raw body under a secret shared with passback, in the header
``X-Courseware-Signature: sha256=<hex>``. The secret is the courseware connection's
``events_secret``: a credential (kept encrypted; the connection's form and REST API take
it), or else a setting of the connection. An event that does not verify is
refused (401) and nothing is stored.

Events are kept in the same table as Canvas Live Events (``store/live_events``), keyed by
their ``id`` (a redelivery is stored once), so the same coalescer turns a course's burst
into one sync; that dispatch sends nothing for a course in manual passback mode
(:func:`passback.services.courseware.is_manual`). Accepted: ``score_changed``,
``activity_changed``, ``page_changed``; any other name is acknowledged and ignored. Only ids
are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import structlog

from passback.errors import NotFound, PassbackError
from passback.services.connections import load
from passback.services.live_events import (
    DUPLICATE,
    IGNORED,
    MAX_BODY_BYTES,
    STORED,
    LiveEventInvalid,
    Receipt,
    event_instant,
)
from passback.settings import Settings
from passback.store import live_events as repo
from passback.store.db import Store
from passback.store.live_events import EventSource, NewEvent

log = structlog.get_logger("passback.courseware_events")

KIND = "courseware"
SECRET_SETTING = "events_secret"
SIGNATURE_HEADER = "X-Courseware-Signature"
ACCEPTED = frozenset({"score_changed", "activity_changed", "page_changed"})
ID_FIELDS = ("student_id", "activity_id", "attempt_id", "page_id")


class CoursewareEventRefused(PassbackError):
    """The event could not be shown to come from the courseware (no secret, no or a wrong signature): HTTP 401."""


def expected_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, given: str | None, connection: str) -> None:
    """Raises :class:`CoursewareEventRefused` unless ``given`` is the body's signature under ``secret``."""
    fix = (f"check that the courseware's event subscription and the courseware connection {connection!r}'s "
           f"{SECRET_SETTING} are the same secret")
    if not given:
        raise CoursewareEventRefused(f"The event carries no {SIGNATURE_HEADER} header; {fix}.")
    if not hmac.compare_digest(expected_signature(secret, body).encode(), given.strip().lower().encode()):
        raise CoursewareEventRefused(f"The event's {SIGNATURE_HEADER} does not verify with the connection's "
                                     f"{SECRET_SETTING}: {fix}.")


def _source(sources: list[EventSource], connection: str | None) -> EventSource:
    if connection:
        found = next((s for s in sources if s.name == connection), None)
        if found is None:
            raise NotFound(f"There is no courseware connection named {connection!r}; the courseware's event URL must "
                           "name a saved courseware connection (`passback connections` lists them).")
        return found
    if len(sources) == 1:
        return sources[0]
    raise NotFound(f"passback cannot tell which courseware connection this event is for ({len(sources)} courseware "
                   "connections). Subscribe with /events/courseware?connection=NAME.")


def _secret(store: Store, settings: Settings, source: EventSource) -> str:
    connection = load(store, settings, source.id)
    secret = connection.credentials.get(SECRET_SETTING) or connection.settings.get(SECRET_SETTING)
    if not secret:
        raise CoursewareEventRefused(
            f"The courseware connection {source.name!r} has no {SECRET_SETTING}, so its events cannot be verified: "
            f"save the connection again with {SECRET_SETTING} set to the secret of the courseware's event "
            "subscription.")
    return str(secret)


def _time(value: Any) -> datetime:
    return event_instant(value, "The courseware event has no occurred_at.", "The courseware event's occurred_at")


def parse(event: Any) -> NewEvent | None:
    """What is kept of an event (ids only), or None for an event passback does not act on."""
    if not isinstance(event, dict) or not isinstance(event.get("name"), str) or not event.get("id"):
        raise LiveEventInvalid("The body is not a courseware event: it needs an id, a name, occurred_at and "
                               "course_id.")
    if event["name"] not in ACCEPTED:
        return None
    if event.get("course_id") in (None, ""):
        raise LiveEventInvalid("The courseware event names no course_id.")
    detail = {name: str(event[name]) for name in ID_FIELDS if event.get(name) not in (None, "")}
    return NewEvent(course_id=str(event["course_id"]), event_name=event["name"], event_time=_time(event.get("occurred_at")),
                    dedupe_key=hashlib.sha256(f"courseware\x1f{event['id']}".encode()).hexdigest(),
                    assignment_id=None, detail=detail)


def _keep(store: Store, settings: Settings, body: bytes, signature: str | None, connection: str | None) -> Receipt:
    source = _source(repo.sources_of_kind(store, KIND), connection)
    verify(_secret(store, settings, source), body, signature, source.name)
    try:
        event = json.loads(body)
    except (ValueError, UnicodeError) as exc:
        raise LiveEventInvalid("The courseware event is not JSON.") from exc
    parsed = parse(event)
    if parsed is None:
        log.info("courseware_event_ignored", event_name=event.get("name"), source_connection_id=source.id)
        return Receipt(IGNORED, event_name=str(event.get("name")), source_connection_id=source.id)
    recorded = repo.record(store, source.id, parsed)
    status = DUPLICATE if recorded.duplicate else STORED
    log.info("courseware_event_received", status=status, event_id=recorded.id, event_name=parsed.event_name,
             source_connection_id=source.id, course_id=parsed.course_id)
    return Receipt(status, event_name=parsed.event_name, event_id=recorded.id, source_connection_id=source.id,
                   course_id=parsed.course_id)


async def receive(store: Store, settings: Settings, body: bytes, signature: str | None, *,
                  connection: str | None = None) -> Receipt:
    """Verify one delivery and keep it if passback acts on it; what became of it.

    Raises :class:`CoursewareEventRefused` (401) when it does not verify, ``LiveEventInvalid``
    (400) for a body that is no event, ``NotFound`` when no courseware connection is its.
    """
    if len(body) > MAX_BODY_BYTES:
        raise LiveEventInvalid(f"The body has {len(body)} bytes; a courseware event is far smaller.")
    if not body.strip():
        raise LiveEventInvalid("The body is empty; the courseware posts each event as JSON.")
    return await asyncio.to_thread(_keep, store, settings, body, signature, connection)
