"""Latency and fault injection for the emulators, as ASGI middleware.

Faults come in two families, because they test different promises:

* before the handler runs (``429``, ``500``): the request had no effect; a client must
  retry without giving up.
* after the handler ran (``timeout``, ``reset``): the write happened but its answer is
  lost; a client must retry without doubling it.

Besides the random faults, a test can script what the next requests to one path are
answered (``scripted``): "the next two token requests answer 503 with Retry-After", or
"every one does", or "the next one is cut off". Scripted answers come before the random
faults and are counted in ``injected["scripted"]``.

The control paths (``/_emulator/...``) are never delayed or faulted.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_KINDS = ("429", "500", "timeout", "reset")


@dataclass
class ScriptedAnswer:
    """The answer the next ``times`` requests to ``path`` get (every one when ``times`` is None).

    An answer with a ``status`` is sent before the handler runs (the request has no
    effect); ``reset`` runs the handler and cuts its answer off, as the random fault does.
    ``methods`` limits it to those methods (all when empty).
    """

    path: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int | None = 1
    methods: tuple[str, ...] = ()
    reset: bool = False

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
        return cls(path=path, status=status,
                   headers={str(k).lower(): str(v) for k, v in (values.get("headers") or {}).items()},
                   body=values.get("body"), times=None if times is None else int(times),
                   methods=tuple(str(m).upper() for m in values.get("methods") or ()),
                   reset=bool(values.get("reset", False)))

    def matches(self, method: str, path: str) -> bool:
        return (path.rstrip("/") == self.path.rstrip("/") and (not self.methods or method in self.methods)
                and (self.times is None or self.times > 0))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "headers": dict(self.headers), "body": self.body,
                "times": self.times, "methods": list(self.methods), "reset": self.reset}


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500")
    timeout_seconds: float = 30.0
    seed: int | None = None
    only_methods: tuple[str, ...] = ()
    rng: random.Random = field(default_factory=random.Random, repr=False)
    injected: dict[str, int] = field(default_factory=dict)
    oversleep: float = 0.0  # seconds the event loop's timer adds to a sleep, learned as it runs
    scripted: list[ScriptedAnswer] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(
                f"Unknown fault kind(s) {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}."
            )
        if self.seed is not None:
            self.rng.seed(self.seed)

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
        if values.get("seed") is not None:
            self.rng.seed(int(values["seed"]))
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

    def draw(self, method: str) -> str | None:
        if self.fault_rate <= 0 or not self.fault_kinds:
            return None
        if self.only_methods and method not in self.only_methods:
            return None
        if self.rng.random() >= self.fault_rate:
            return None
        kind = self.rng.choice(self.fault_kinds)
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind

    def take_scripted(self, method: str, path: str) -> ScriptedAnswer | None:
        """The scripted answer for this request, if one is left (and one fewer left)."""
        for answer in self.scripted:
            if answer.matches(method, path):
                if answer.times is not None:
                    answer.times -= 1
                self.injected["scripted"] = self.injected.get("scripted", 0) + 1
                return answer
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "fault_rate": self.fault_rate,
            "fault_kinds": list(self.fault_kinds),
            "timeout_seconds": self.timeout_seconds,
            "only_methods": list(self.only_methods),
            "injected": dict(self.injected),
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
        config = self.config
        if config.latency_ms > 0:
            await config.delay()
        scripted = config.take_scripted(scope["method"], scope["path"]) if config.scripted else None
        if scripted is not None:
            await _send_scripted(self.app, scripted, scope, receive, send)
            return
        kind = config.draw(scope["method"])
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
        if kind == "timeout":
            await asyncio.sleep(config.timeout_seconds)
            for message in captured:
                await send(message)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"trunc', "more_body": False})


def _json_response(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_scripted(app: ASGIApp, answer: ScriptedAnswer, scope: Scope, receive: Receive, send: Send) -> None:
    if answer.reset:  # the handler runs; its answer is cut off
        async def discard(message: Message) -> None:
            return

        await app(scope, receive, discard)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"trunc', "more_body": False})
        return
    body = b"" if answer.body is None else json.dumps(answer.body).encode()
    headers = {"content-type": "application/json", **answer.headers} if body else dict(answer.headers)
    await _send(send, answer.status, body, headers)
