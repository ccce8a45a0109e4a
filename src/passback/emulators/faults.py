"""Latency and fault injection for the emulators, as ASGI middleware.

Faults come in two families, because they test different promises:

* before the handler runs (``429``, ``500``): the request had no effect; a client must
  retry without giving up.
* after the handler ran (``timeout``, ``reset``): the write happened but its answer is
  lost; a client must retry without doubling it.

Random faults are drawn per request, not from a shared random stream: whether a request
is faulted, and how, is a function of the seed, the request (method, path with its
query, a digest of its body) and its attempt number (the how-manieth time this same
request came). A trial run again with the same seed that sends the same requests meets
the same faults, whatever order concurrent requests arrive in: a failing trial replays
exactly. (Requests whose path or body carry an id the server assigned are the same
requests again only if those ids are: a run with one request in flight at a time is.)
Every fault drawn is in ``log``, with what the handler answered when the fault came
after it.

Besides the random faults, a test can script what the next requests to one path are
answered (``scripted``): "the next two token requests answer 503 with Retry-After", or
"every one does", or "the next one is cut off", or "the next create is answered without
this header". Scripted answers come before the random faults and are counted in
``injected["scripted"]``.

The control paths (``/_emulator/...``) are never delayed or faulted, nor counted.

``in_flight`` is a gauge of the requests being answered now and the most answered at
once (``GET /_emulator/in_flight``; ``POST`` starts the maximum again): what a server
would see of its clients' concurrency, latency included. A request leaves it just
before its last bytes go out, so a client cannot have its answer, start another and
have both counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_KINDS = ("429", "500", "timeout", "reset")
AFTER_HANDLER = frozenset({"timeout", "reset"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class ScriptedAnswer:
    """The answer the next ``times`` requests to ``path`` get (every one when ``times`` is None).

    What the answer is:

    * a ``status`` (the default, 503): sent before the handler runs, so the request has
      no effect;
    * ``drop``: the connection is cut before the handler runs (no effect either: the
      server could not be reached);
    * ``reset``: the handler runs and its answer is cut off, as the random fault does;
    * ``pass_through``: the handler runs and its answer goes out, less the headers named
      in ``drop_headers`` (naming headers implies it).

    ``methods`` limits it to those methods (all when empty); ``body_contains`` to requests
    whose body holds that text; ``skip`` lets that many matching requests through first.
    The first answer in the script that matches a request decides it. ``answered_at``
    keeps the (monotonic) time of each answer given, for tests that time a client.
    """

    path: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int | None = 1
    methods: tuple[str, ...] = ()
    reset: bool = False
    drop: bool = False
    pass_through: bool = False
    drop_headers: tuple[str, ...] = ()
    body_contains: str | None = None
    skip: int = 0
    answered_at: list[float] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScriptedAnswer:
        path = str(values.get("path", ""))
        if not path.startswith("/"):
            raise ValueError(f"A scripted answer needs a path starting with '/', not {path!r}")
        status = int(values.get("status", 503))
        if not 100 <= status <= 599:
            raise ValueError(f"A scripted answer's status must be an HTTP status, not {status}")
        times = values.get("times", 1)
        if times is not None and int(times) < 1:
            raise ValueError("A scripted answer's times must be at least 1, or null for every request")
        skip = int(values.get("skip", 0))
        if skip < 0:
            raise ValueError("A scripted answer's skip must be 0 or more")
        drop_headers = tuple(str(h).lower() for h in values.get("drop_headers") or ())
        ways = [bool(values.get("reset")), bool(values.get("drop")),
                bool(values.get("pass_through")) or bool(drop_headers)]
        if sum(ways) > 1:
            raise ValueError("A scripted answer is one of: a status, reset, drop or pass_through (drop_headers)")
        contains = values.get("body_contains")
        return cls(path=path, status=status,
                   headers={str(k).lower(): str(v) for k, v in (values.get("headers") or {}).items()},
                   body=values.get("body"), times=None if times is None else int(times),
                   methods=tuple(str(m).upper() for m in values.get("methods") or ()),
                   reset=ways[0], drop=ways[1], pass_through=ways[2], drop_headers=drop_headers,
                   body_contains=None if contains is None else str(contains), skip=skip)

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        return (path.rstrip("/") == self.path.rstrip("/") and (not self.methods or method in self.methods)
                and (self.times is None or self.times > 0)
                and (self.body_contains is None or self.body_contains.encode() in body))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "headers": dict(self.headers), "body": self.body,
                "times": self.times, "methods": list(self.methods), "reset": self.reset, "drop": self.drop,
                "pass_through": self.pass_through, "drop_headers": list(self.drop_headers),
                "body_contains": self.body_contains, "skip": self.skip, "answered": len(self.answered_at)}


@dataclass(frozen=True)
class InjectedFault:
    """One random fault: the request it hit, its attempt number, the kind, and (for a fault
    after the handler) the status the handler answered, which the client never saw."""

    method: str
    path: str
    query: str
    attempt: int
    kind: str
    body: bytes = b""
    handler_status: int | None = None

    @property
    def lost_write(self) -> bool:
        """A write the handler took in (2xx) whose answer was lost."""
        return (self.kind in AFTER_HANDLER and self.method not in READS and self.handler_status is not None
                and 200 <= self.handler_status < 300)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "query": self.query, "attempt": self.attempt,
                "kind": self.kind, "handler_status": self.handler_status}


def request_digest(method: str, path: str, query: str = "", body: bytes = b"") -> str:
    """What makes two requests the same request for fault drawing."""
    hashed = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode(), body):
        hashed.update(len(part).to_bytes(8, "big"))
        hashed.update(part)
    return hashed.hexdigest()


def draw_fault(seed: int, fault_rate: float, kinds: tuple[str, ...], digest: str, attempt: int) -> str | None:
    """The fault (or None) for attempt ``attempt`` of the request with ``digest``: a pure function.

    A stable hash (not Python's ``hash``, which changes from process to process) of the
    seed, the request and the attempt gives two numbers in [0, 1): one decides whether
    to fault, the other which kind.
    """
    if fault_rate <= 0 or not kinds:
        return None
    raw = hashlib.blake2b(f"{seed}\x00{digest}\x00{attempt}".encode(), digest_size=16).digest()
    whether = int.from_bytes(raw[:8], "big") / 2**64
    if whether >= fault_rate:
        return None
    which = int.from_bytes(raw[8:], "big") / 2**64
    return kinds[min(int(which * len(kinds)), len(kinds) - 1)]


@dataclass
class InFlight:
    """Requests being answered now, and the most at once since the last :meth:`reset`.

    The emulator runs on one event loop, so plain counters are exact.
    """

    current: int = 0
    max: int = 0
    total: int = 0

    def enter(self) -> None:
        self.current += 1
        self.total += 1
        self.max = max(self.max, self.current)

    def leave(self) -> None:
        self.current -= 1

    def reset(self) -> None:
        """Start the maximum again from what is in flight now (and the total from 0)."""
        self.max = self.current
        self.total = 0

    def as_dict(self) -> dict[str, int]:
        return {"current": self.current, "max": self.max, "total": self.total}


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500")
    timeout_seconds: float = 30.0
    seed: int | None = None  # None: one is chosen, and shown by as_dict, so the trial can be replayed
    only_methods: tuple[str, ...] = ()
    injected: dict[str, int] = field(default_factory=dict)
    oversleep: float = 0.0  # seconds the event loop's timer adds to a sleep, learned as it runs
    scripted: list[ScriptedAnswer] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter, repr=False)
    log: list[InjectedFault] = field(default_factory=list, repr=False)
    in_flight: InFlight = field(default_factory=InFlight, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(
                f"Unknown fault kind(s) {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}."
            )
        if self.seed is None:
            self.seed = secrets.randbelow(2**31)

    def update(self, values: dict[str, Any]) -> None:
        for key in ("latency_ms", "fault_rate", "timeout_seconds"):
            if key in values:
                setattr(self, key, float(values[key]))
        if "fault_kinds" in values:
            kinds = tuple(values["fault_kinds"])
            unknown = set(kinds) - set(FAULT_KINDS)
            if unknown:
                raise ValueError(f"Unknown fault kind(s) {sorted(unknown)}")
            self.fault_kinds = kinds
        if "only_methods" in values:
            self.only_methods = tuple(m.upper() for m in values["only_methods"])
        if values.get("seed") is not None:  # a new trial: attempt numbers start again
            self.seed = int(values["seed"])
            self.attempts.clear()
        if "scripted" in values:  # replaces the script; an empty list ends it
            self.scripted = [ScriptedAnswer.from_dict(v) for v in values["scripted"] or ()]

    async def delay(self) -> None:
        """Sleep the configured latency, no more: asyncio's timer rounds every wake-up up
        (about a millisecond), so the sleep is shortened by what it overslept lately."""
        wanted = self.latency_ms / 1000.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(max(0.0, wanted - self.oversleep))
        late = loop.time() - started - wanted
        self.oversleep = min(max(self.oversleep + 0.1 * late, 0.0), wanted / 2)

    def wants_draw(self, method: str) -> bool:
        if self.fault_rate <= 0 or not self.fault_kinds:
            return False
        return not self.only_methods or method in self.only_methods

    def draw(self, method: str, path: str, query: str = "", body: bytes = b"") -> tuple[str | None, int]:
        """The fault for this request (or None) and its attempt number; counted and logged."""
        if not self.wants_draw(method):
            return None, 0
        digest = request_digest(method, path, query, body)
        self.attempts[digest] += 1
        attempt = self.attempts[digest]
        assert self.seed is not None
        kind = draw_fault(self.seed, self.fault_rate, self.fault_kinds, digest, attempt)
        if kind is not None:
            self.injected[kind] = self.injected.get(kind, 0) + 1
            if kind not in AFTER_HANDLER:  # the others are logged with what the handler answered
                self.log.append(InjectedFault(method, path, query, attempt, kind, body))
        return kind, attempt

    def needs_body(self, method: str) -> bool:
        return self.wants_draw(method) or any(a.body_contains is not None for a in self.scripted)

    def take_scripted(self, method: str, path: str, body: bytes = b"") -> ScriptedAnswer | None:
        """The scripted answer for this request, if one is left (and one fewer left)."""
        for answer in self.scripted:
            if answer.matches(method, path, body):
                if answer.skip > 0:
                    answer.skip -= 1
                    return None
                if answer.times is not None:
                    answer.times -= 1
                self.injected["scripted"] = self.injected.get("scripted", 0) + 1
                answer.answered_at.append(time.monotonic())
                return answer
        return None

    def lost_writes(self) -> list[InjectedFault]:
        """Requests the handler took in whose answers the faults withheld."""
        return [fault for fault in self.log if fault.lost_write]

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "fault_rate": self.fault_rate,
            "fault_kinds": list(self.fault_kinds),
            "timeout_seconds": self.timeout_seconds,
            "seed": self.seed,
            "only_methods": list(self.only_methods),
            "injected": dict(self.injected),
            "log": [fault.as_dict() for fault in self.log],
            "scripted": [answer.as_dict() for answer in self.scripted],
        }


class FaultMiddleware:
    def __init__(self, app: ASGIApp, config: FaultConfig, throttled_response: Any = None) -> None:
        self.app = app
        self.config = config
        self.throttled_response = throttled_response or _json_response(
            429, {"message": "Too Many Requests"}, {"retry-after": "1"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        gauge = self.config.in_flight
        gauge.enter()
        left = False

        async def counted(message: Message) -> None:
            nonlocal left
            if not left and message["type"] == "http.response.body" and not message.get("more_body", False):
                left = True  # before the last bytes are sent: the client cannot be done while still counted
                gauge.leave()
            await send(message)

        try:
            await self._answer(scope, receive, counted)
        finally:
            if not left:
                gauge.leave()

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.config
        if config.latency_ms > 0:
            await config.delay()
        method, path = scope["method"], scope["path"]
        body = b""
        if config.needs_body(method):  # read it once, then hand it to the app as it came
            body, receive = await _buffered(receive)
        scripted = config.take_scripted(method, path, body) if config.scripted else None
        if scripted is not None:
            await _send_scripted(self.app, scripted, scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        kind, attempt = config.draw(method, path, query, body)
        if kind == "429":
            await _send(send, *self.throttled_response)
            return
        if kind == "500":
            await _send(send, *_json_response(500, {"message": "Internal Server Error"}))
            return
        if kind is None:
            await self.app(scope, receive, send)
            return
        # The write happens; its answer is withheld (timeout) or broken (reset).
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        status = next((m["status"] for m in captured if m["type"] == "http.response.start"), None)
        config.log.append(InjectedFault(method, path, query, attempt, kind, body, status))
        if kind == "timeout":
            await asyncio.sleep(config.timeout_seconds)
            for message in captured:
                await send(message)
            return
        await _send_cut_off(send)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The request's body, and a ``receive`` that gives the app the same messages again."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return body, replay


def _json_response(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_cut_off(send: Send) -> None:
    """An answer that promises 1000 bytes and breaks off after 7: the client sees a reset."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"trunc', "more_body": False})


async def _send_scripted(app: ASGIApp, answer: ScriptedAnswer, scope: Scope, receive: Receive, send: Send) -> None:
    if answer.drop:  # cut off before the handler: the request had no effect
        await _send_cut_off(send)
        return
    if answer.reset:  # the handler runs; its answer is cut off
        async def discard(message: Message) -> None:
            return

        await app(scope, receive, discard)
        await _send_cut_off(send)
        return
    if answer.pass_through:  # the handler runs; its answer goes out less the named headers
        dropped = {h.encode() for h in answer.drop_headers}

        async def filtered(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                  if k.lower() not in dropped]}
            await send(message)

        await app(scope, receive, filtered)
        return
    body = b"" if answer.body is None else json.dumps(answer.body).encode()
    headers = {"content-type": "application/json", **answer.headers} if body else dict(answer.headers)
    await _send(send, answer.status, body, headers)
