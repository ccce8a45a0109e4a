"""A log of every write an emulator accepted, for tests to count.

"Never doubled" must be checked on what the server took in, not on a server that merges
or refuses a second write by itself. This middleware sits inside the fault injection, so
a request faulted before the handler (a 429, a 500) is not in the log, while one whose
answer was lost after the handler ran (a timeout, a reset) is: it did take effect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class AcceptedWrite:
    method: str
    path: str
    query: str
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class WriteLog:
    """ASGI middleware appending each accepted (2xx) write to ``writes``."""

    def __init__(self, app: ASGIApp, writes: list[AcceptedWrite]) -> None:
        self.app = app
        self.writes = writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS or scope["path"].startswith("/_emulator/"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def listening_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def listening_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                self.writes.append(AcceptedWrite(scope["method"], scope["path"],
                                                 scope.get("query_string", b"").decode(), message["status"],
                                                 b"".join(chunks)))
            await send(message)

        await self.app(scope, listening_receive, listening_send)
