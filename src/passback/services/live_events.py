"""Canvas Live Events: verify what Canvas posts to ``/events/canvas``, keep what changed, durably and once.

Canvas's Live Events data service delivers each event over HTTPS as a POST whose body is
a JWT signed with RS256 ("Sign Payload" on the subscription): the claims are the event,
``{"metadata": {...}, "body": {...}}``. The key that signed it is named by the token's
``kid`` and published in a JWKS that the publisher rotates (Instructure rotates monthly
and publishes the previous, current and next keys). passback checks the signature
against that JWKS (``PASSBACK_LIVE_EVENTS_JWKS_URL``, or the Canvas connection's setting
``live_events_jwks_url``), caching the keys and fetching them again once when a token
names a key it has not seen (no more often than ``PASSBACK_LIVE_EVENTS_JWKS_REFETCH_SECONDS``,
so tokens with made-up key ids cannot make passback hammer the publisher). A subscription
without "Sign Payload" posts the event as plain JSON: refused unless
``PASSBACK_LIVE_EVENTS_ALLOW_UNSIGNED=true``.

Which events passback acts on, in Canvas's own format (canvas-lms
``lib/canvas/live_events.rb``; the event catalogue in ``doc/api/data_services``):

* ``grade_change``: a submission's grade changed (body: ``submission_id``,
  ``assignment_id``, ``user_id``/``student_id``, ``grade``, ``score``, ``old_*``, ...);
* ``submission_updated``: a submission changed (late, missing, excused, a new attempt);
* ``assignment_created`` and ``assignment_updated`` (name, due date, points; Canvas deletes
  an assignment by setting its ``workflow_state`` to ``deleted`` in an
  ``assignment_updated``); ``assignment_deleted`` is accepted too, though Canvas's event
  catalogue has no such event today.

Every other event is acknowledged and ignored. Ids in Live Events are Canvas *global*
ids (shard * 10^13 + local id) where the REST API speaks local ids: :func:`local_id`.

An event is stored with only the ids passback acts on; the grade, the student's SIS id and
the teacher's login, address and browser in the event are not kept, and logs carry ids
and counts only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import RSAKey

from passback.errors import Invalid, NotFound, PassbackError, Unavailable
from passback.services.jwks import parse_jwks
from passback.settings import Settings
from passback.store import live_events as repo
from passback.store.db import Store
from passback.store.live_events import EventSource, NewEvent

log = structlog.get_logger("passback.live_events")

GRADE_CHANGE, SUBMISSION_UPDATED = "grade_change", "submission_updated"
ASSIGNMENT_CREATED, ASSIGNMENT_UPDATED, ASSIGNMENT_DELETED = "assignment_created", "assignment_updated", "assignment_deleted"
ACCEPTED = frozenset({GRADE_CHANGE, SUBMISSION_UPDATED, ASSIGNMENT_CREATED, ASSIGNMENT_UPDATED, ASSIGNMENT_DELETED})
ALGORITHM = "RS256"  # what Canvas signs Live Events with; anything else ("none", HS256) is refused
JWKS_TTL_SECONDS = 300.0  # the publisher's keys are fetched again after this long, unknown key or not
LEEWAY_SECONDS = 60  # clocks of Canvas and passback may differ this much (when a token carries exp/iat)
MAX_BODY_BYTES = 1_048_576  # an event's fields are truncated to 8 KB by Canvas; a megabyte is not an event
SHARD_FACTOR = 10**13  # Canvas's global id = shard id * 10^13 + local id
JWKS_SETTING, UNSIGNED_SETTING = "PASSBACK_LIVE_EVENTS_JWKS_URL", "PASSBACK_LIVE_EVENTS_ALLOW_UNSIGNED"
CONNECTION_JWKS = "live_events_jwks_url"  # a Canvas connection's own JWKS URL (its settings), over the environment's
STORED, DUPLICATE, IGNORED = "stored", "duplicate", "ignored"


class LiveEventRefused(PassbackError):
    """The event could not be shown to come from Canvas (unsigned, bad signature, unknown key): HTTP 401."""


class LiveEventInvalid(Invalid):
    """The body is not a Live Event passback can read: HTTP 400."""


class KeysUnavailable(Unavailable):
    """The publisher's keys could not be fetched: HTTP 503, so Canvas delivers the event again later."""


@dataclass(frozen=True)
class ParsedEvent:
    """What passback keeps of an accepted event (:func:`parse_event`)."""

    event_name: str
    event_time: datetime
    course_id: str
    assignment_id: str | None
    dedupe_key: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Receipt:
    """What became of a delivery: stored (new), duplicate (stored before) or ignored (not an event passback acts on)."""

    status: str
    event_name: str | None = None
    event_id: int | None = None
    source_connection_id: int | None = None
    course_id: str | None = None


# --- parsing: pure functions over the event's JSON --------------------------------------------------


def local_id(value: Any) -> str | None:
    """A Canvas id as the REST API names it: a global id (shard * 10^13 + local) becomes the local id."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        number = int(text)
        return str(number % SHARD_FACTOR) if number >= SHARD_FACTOR else str(number)
    return text


def parse_time(value: Any) -> datetime:
    """``metadata.event_time`` (ISO 8601, e.g. ``2019-11-01T19:11:05.222Z``) as an aware UTC time."""
    return event_instant(value, "The event has no metadata.event_time; a Canvas Live Event always carries one.",
                         "The event's metadata.event_time")


def event_instant(value: Any, missing: str, what: str) -> datetime:
    """An event's time (ISO 8601) as an aware UTC time; ``missing`` and ``what`` word the refusal."""
    if not isinstance(value, str) or not value.strip():
        raise LiveEventInvalid(missing)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise LiveEventInvalid(f"{what} {value!r} is not an ISO 8601 time.") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _object_id(event_name: str, body: Mapping[str, Any]) -> str:
    """The id of what the event is about: the submission for grade and submission events, else the assignment."""
    if event_name in (GRADE_CHANGE, SUBMISSION_UPDATED):
        return str(body.get("submission_id") or f"{body.get('assignment_id')}:{body.get('user_id')}")
    return str(body.get("assignment_id") or "")


def dedupe_key(metadata: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    """The event's identity: sha256 of its name, time, course, originating request and object.

    Why these: a redelivery of one event carries the same metadata and body, but not
    necessarily the same bytes (it is signed again, perhaps with the next key, and its JSON
    need not keep its key order), so the raw body is no key. ``request_id`` alone is no key
    either: one request emits several events (a grade is a ``grade_change`` and a
    ``submission_updated``; a bulk grade is a hundred ``grade_change`` events), and events
    from background jobs carry a ``job_id`` instead. ``event_time`` has millisecond
    precision, so two events of one request about one object are told apart by name and
    time; two events alike in all of these would make the same change, and keeping one of
    them loses nothing.
    """
    event_name = str(metadata.get("event_name") or "")
    origin = metadata.get("request_id") or metadata.get("job_id") or ""
    parts = [event_name, str(metadata.get("event_time") or ""), str(metadata.get("context_type") or ""),
             str(metadata.get("context_id") or ""), str(origin), _object_id(event_name, body)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _course_id(metadata: Mapping[str, Any], body: Mapping[str, Any]) -> str | None:
    if body.get("context_type") == "Course" and body.get("context_id"):
        return local_id(body["context_id"])
    if metadata.get("context_type") == "Course":
        return local_id(metadata.get("context_id"))
    return None


def _detail(event_name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ids (and assignment state) passback may act on; grades, names and logins stay out of the store."""
    if event_name in (GRADE_CHANGE, SUBMISSION_UPDATED):
        found = {"submission_id": local_id(body.get("submission_id")), "user_id": local_id(body.get("user_id"))}
        if event_name == SUBMISSION_UPDATED and body.get("workflow_state"):
            found["workflow_state"] = str(body["workflow_state"])
        return found
    return {"workflow_state": str(body["workflow_state"])} if body.get("workflow_state") else {}


def event_name_of(event: Any) -> str | None:
    metadata = event.get("metadata") if isinstance(event, dict) else None
    name = metadata.get("event_name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def parse_event(event: Any) -> ParsedEvent | None:
    """The event passback keeps, or None for an event it does not act on (another name, not in a course).

    Raises :class:`LiveEventInvalid` when the JSON is not a Live Event at all.
    """
    if not isinstance(event, dict) or not isinstance(event.get("metadata"), dict):
        raise LiveEventInvalid("The body is not a Canvas Live Event: it needs a metadata object (event_name, "
                               "event_time, context_id, ...) and a body object. Choose the Canvas format, not "
                               "Caliper, for the subscription.")
    metadata = event["metadata"]
    body = event.get("body") if isinstance(event.get("body"), dict) else {}
    name = event_name_of(event)
    if name is None:
        raise LiveEventInvalid("The event has no metadata.event_name; a Canvas Live Event always carries one.")
    if name not in ACCEPTED:
        return None
    event_time = parse_time(metadata.get("event_time"))
    course_id = _course_id(metadata, body)
    if course_id is None:
        return None  # an assignment of a group or an account: nothing of a course's gradebook
    return ParsedEvent(event_name=name, event_time=event_time, course_id=course_id,
                       assignment_id=local_id(body.get("assignment_id")), dedupe_key=dedupe_key(metadata, body),
                       detail=_detail(name, body))


# --- the publisher's keys ------------------------------------------------------------------------


@dataclass
class _KeySet:
    fetched_at: float
    keys: dict[str, RSAKey]


@dataclass
class JwksCache:
    """The publishers' keys by JWKS URL: cached, refetched when stale or (rate-limited) for a key id not seen.

    One per process (the web app keeps one); ``fetches`` counts the fetches made, for
    tests and a status line. A fetch for a URL is made once however many deliveries
    wait on it at the same moment.
    """

    ttl: float = JWKS_TTL_SECONDS
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    fetches: int = 0
    _sets: dict[str, _KeySet] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def clear(self) -> None:
        self._sets.clear()

    async def key(self, url: str, kid: str, *, timeout: float, refetch_seconds: float) -> RSAKey:
        """The key ``kid`` of the JWKS at ``url``, or :class:`LiveEventRefused` when the publisher has no such key."""
        known = self._sets.get(url)
        if known is None or self.clock() - known.fetched_at > self.ttl:
            known = await self._refresh(url, timeout, seen=known)
        found = known.keys.get(kid)
        if found is None and self.clock() - known.fetched_at >= refetch_seconds:
            known = await self._refresh(url, timeout, seen=known)  # the publisher may have rotated: look once more
            found = known.keys.get(kid)
        if found is None:
            raise LiveEventRefused(
                f"The event was signed with key {kid!r}, which is not among the keys published at {url}. Check that "
                f"{JWKS_SETTING} (or the Canvas connection's {CONNECTION_JWKS}) is the JWKS of the Live Events "
                "subscription's region; a key just rotated in is looked up again within "
                "PASSBACK_LIVE_EVENTS_JWKS_REFETCH_SECONDS.")
        return found

    async def _refresh(self, url: str, timeout: float, *, seen: _KeySet | None) -> _KeySet:
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            current = self._sets.get(url)
            if current is not None and current is not seen:
                return current  # another delivery fetched them while this one waited
            fetched = _KeySet(self.clock(), await self._fetch(url, timeout))
            self.fetches += 1
            self._sets[url] = fetched
            log.info("live_events_keys_fetched", url=url, keys=len(fetched.keys))
            return fetched

    async def _fetch(self, url: str, timeout: float) -> dict[str, RSAKey]:
        fix = f"check {JWKS_SETTING} (or the Canvas connection's {CONNECTION_JWKS}) and that passback can reach it"
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=timeout, follow_redirects=True) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"passback could not fetch the Live Events signing keys from {url} "
                                  f"({exc.__class__.__name__}); {fix}.") from exc
        if response.status_code != 200:
            raise KeysUnavailable(f"The Live Events JWKS URL {url} answered {response.status_code}; {fix}.")
        try:
            entries = response.json()["keys"]
            if not isinstance(entries, list):
                raise TypeError("keys is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise KeysUnavailable(f"The Live Events JWKS URL {url} did not answer a JSON Web Key Set; {fix}.") from exc
        return parse_jwks(entries)


# --- the delivery ---------------------------------------------------------------------------------


def is_unsigned(body: bytes) -> bool:
    """A plain JSON event (a subscription without "Sign Payload") rather than a compact JWS."""
    return body.lstrip()[:1] in (b"{", b"[")


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeError) as exc:
        raise LiveEventInvalid(f"The {what} is not JSON; Canvas posts a Live Event as a signed JWT whose claims are "
                               "the event, or (unsigned) as the event's JSON.") from exc


def _unverified(token: str) -> tuple[dict[str, Any], Any]:
    """The token's header and claims before the signature is checked: only to choose the key set to check it with."""
    try:
        compact = jws.extract_compact(token.encode())
        return dict(compact.headers()), _json(compact.payload, "token's payload")
    except (JoseError, ValueError, TypeError, UnicodeError) as exc:
        raise LiveEventRefused("The body is neither a signed JWT nor a JSON event. Canvas posts Live Events as "
                               "a JWT signed with RS256 when the subscription's \"Sign Payload\" is on.") from exc


def _check_times(claims: Mapping[str, Any]) -> None:
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp + LEEWAY_SECONDS <= now:
        raise LiveEventRefused(f"The event's token expired {int(now - exp)} seconds ago; check passback's clock.")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf - LEEWAY_SECONDS > now:
        raise LiveEventRefused("The event's token is not valid yet (nbf); check passback's clock.")


def resolve_source(sources: list[EventSource], *, connection: str | None, hostname: str | None) -> EventSource:
    """The Canvas connection an event belongs to.

    Named in the subscription URL (``/events/canvas?connection=NAME``), else the one whose
    URL's host is the event's ``metadata.hostname``, else the only Canvas connection there is.
    """
    if connection:
        found = next((s for s in sources if s.name == connection), None)
        if found is None:
            raise NotFound(f"There is no Canvas connection named {connection!r}; the Live Events subscription URL "
                           "must name a saved Canvas connection (`passback connections` lists them).")
        return found
    if hostname:
        wanted = hostname.strip().lower()
        matching = [s for s in sources if wanted in _hosts(s.base_url)]
        if len(matching) == 1:
            return matching[0]
    if len(sources) == 1:
        return sources[0]
    raise NotFound("passback cannot tell which Canvas connection this event is for "
                   f"({len(sources)} Canvas connections, none at the event's host). Subscribe with "
                   "/events/canvas?connection=NAME, NAME being the Canvas connection's name.")


def _hosts(base_url: str) -> set[str]:
    parts = urlsplit(base_url)
    return {h.lower() for h in (parts.netloc, parts.hostname or "") if h}


def jwks_url_for(source: EventSource, settings: Settings) -> str | None:
    override = source.settings.get(CONNECTION_JWKS)
    return str(override) if override else settings.live_events_jwks_url


async def _verified(token: str, header: Mapping[str, Any], source: EventSource, settings: Settings,
                    cache: JwksCache) -> Any:
    if header.get("alg") != ALGORITHM:
        raise LiveEventRefused(f"The event is signed with {header.get('alg')!r}; Canvas signs Live Events with "
                               f"{ALGORITHM} and passback accepts nothing else.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise LiveEventRefused("The event's token names no signing key (kid), so it cannot be checked against "
                               "the publisher's keys.")
    url = jwks_url_for(source, settings)
    if not url:
        raise LiveEventRefused(f"No JWKS is configured to check signed Live Events with: set {JWKS_SETTING} to the "
                               "JWKS URL Instructure publishes for Live Events (or the Canvas connection's "
                               f"{CONNECTION_JWKS}).")
    key = await cache.key(url, kid, timeout=settings.http_timeout, refetch_seconds=settings.live_events_jwks_refetch_seconds)
    try:
        claims = dict(jwt.decode(token, key, algorithms=[ALGORITHM]).claims)
    except BadSignatureError as exc:
        raise LiveEventRefused(f"The event's signature does not verify with key {kid!r} published at {url}: it was "
                               "not signed by the publisher, or it was changed on the way.") from exc
    except (JoseError, ValueError, TypeError) as exc:
        raise LiveEventRefused(f"The event's token could not be read ({exc.__class__.__name__}).") from exc
    _check_times(claims)
    return claims


async def receive(store: Store, settings: Settings, body: bytes, *, cache: JwksCache,
                  connection: str | None = None) -> Receipt:
    """Verify one delivery, keep it if passback acts on it; what became of it.

    Raises :class:`LiveEventRefused` (401) for an unsigned event that is not allowed, a
    token that does not verify, or a key not published; :class:`LiveEventInvalid` (400)
    for a body that is no Live Event; :class:`KeysUnavailable` (503) when the keys cannot
    be fetched; ``NotFound`` when no Canvas connection is the event's.
    """
    if len(body) > MAX_BODY_BYTES:
        raise LiveEventInvalid(f"The body has {len(body)} bytes; a Live Event is far smaller.")
    if not body.strip():
        raise LiveEventInvalid("The body is empty; Canvas posts each Live Event as a signed JWT.")
    sources = await asyncio.to_thread(repo.canvas_sources, store)
    if is_unsigned(body):
        if not settings.live_events_allow_unsigned:
            raise LiveEventRefused(f"Unsigned Live Events are refused: turn on \"Sign Payload\" on the Canvas Live Events "
                                   f"subscription, or set {UNSIGNED_SETTING}=true to accept plain JSON events (only "
                                   "where nothing else can reach this address).")
        event = _json(body, "body")
        source = resolve_source(sources, connection=connection, hostname=_hostname(event))
    else:
        token = body.decode("ascii", "replace").strip()
        header, unverified = _unverified(token)  # its hostname only picks the connection whose keys must verify it
        source = resolve_source(sources, connection=connection, hostname=_hostname(unverified))
        event = await _verified(token, header, source, settings, cache)
    return await asyncio.to_thread(_keep, store, source, event)


def _hostname(event: Any) -> str | None:
    metadata = event.get("metadata") if isinstance(event, dict) else None
    value = metadata.get("hostname") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


def _keep(store: Store, source: EventSource, event: Any) -> Receipt:
    parsed = parse_event(event)
    if parsed is None:
        name = event_name_of(event)
        log.info("live_event_ignored", event_name=name, source_connection_id=source.id)
        return Receipt(IGNORED, event_name=name, source_connection_id=source.id)
    recorded = repo.record(store, source.id, NewEvent(
        course_id=parsed.course_id, event_name=parsed.event_name, event_time=parsed.event_time,
        dedupe_key=parsed.dedupe_key, assignment_id=parsed.assignment_id, detail=parsed.detail))
    status = DUPLICATE if recorded.duplicate else STORED
    log.info("live_event_received", status=status, event_id=recorded.id, event_name=parsed.event_name,
             source_connection_id=source.id, course_id=parsed.course_id)
    return Receipt(status, event_name=parsed.event_name, event_id=recorded.id, source_connection_id=source.id,
                   course_id=parsed.course_id)
