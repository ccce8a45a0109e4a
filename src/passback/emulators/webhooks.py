"""The emulators' outgoing webhooks: a queue of deliveries posted in the background, retried with backoff.

Canvas Live Events and the courseware's change events are delivered the same way: after
the request that made them is answered, to each subscription's URL, a refused or
unanswered delivery tried again (0.5 s, doubled per attempt) up to the subscription's
``max_attempts``. What each publisher signs and how is its own; this keeps the queue, the
log of deliveries (no event content) and the count still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

RETRY_SECONDS = 0.5  # a failed delivery is tried again after this, doubled per attempt


@dataclass
class Delivery:
    subscription_id: str
    body: bytes
    headers: dict[str, str]
    shown: dict[str, Any] = field(default_factory=dict)  # what the delivery log says of it (names and ids only)
    attempt: int = 1


class Outbox:
    """Posts deliveries one after another from a background task; ``subscriptions`` reads them by id afresh."""

    def __init__(self, subscriptions: Callable[[], dict[str, Any]], name: str) -> None:
        self.subscriptions = subscriptions
        self.name = name
        self.deliveries: list[dict[str, Any]] = []
        self.pending = 0
        self._queue: asyncio.Queue[Delivery] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def put(self, item: Delivery) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._deliver_all(), name=self.name)
        self.pending += 1
        self._queue.put_nowait(item)

    async def _deliver_all(self) -> None:
        assert self._queue is not None
        self._client = httpx.AsyncClient(timeout=10.0)
        while True:
            await self._deliver(await self._queue.get())

    async def _deliver(self, item: Delivery) -> None:
        subscription = self.subscriptions().get(item.subscription_id)
        if subscription is None:
            self.pending -= 1
            return
        status: int | None
        try:
            assert self._client is not None
            response = await self._client.post(subscription["url"], content=item.body, headers=item.headers)
            status = response.status_code
        except httpx.HTTPError:  # not answered: tried again, as a refused delivery is
            status = None
        self.deliveries.append({"subscription": item.subscription_id, **item.shown, "status": status,
                                "attempt": item.attempt, "at": time.time()})
        if (status is not None and 200 <= status < 300) or item.attempt >= subscription["max_attempts"]:
            self.pending -= 1
            return
        item.attempt += 1
        retry = asyncio.get_running_loop().create_task(self._later(item, RETRY_SECONDS * 2 ** (item.attempt - 2)))
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

    async def _later(self, item: Delivery, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._queue is not None:
            self._queue.put_nowait(item)

    async def stop(self) -> None:
        """Stop delivering (the emulator shuts down); what was not delivered is dropped."""
        for task in [self._worker, *self._retries]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._client is not None:
            await self._client.aclose()


class Publisher:
    """What a publisher of webhooks shows of its outbox, and how it stops; it keeps ``outbox`` and its subscriptions."""

    outbox: Outbox

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        return self.outbox.deliveries

    @property
    def pending(self) -> int:
        return self.outbox.pending

    async def stop(self) -> None:
        await self.outbox.stop()

    def listed(self) -> list[dict[str, Any]]:
        """The subscriptions as the control route lists them."""
        raise NotImplementedError

    def subscribe(self, values: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def unsubscribe(self, subscription_id: str) -> bool:
        raise NotImplementedError


def subscription_routes(prefix: str, publisher: Publisher) -> list[BaseRoute]:
    """``{prefix}/subscriptions`` (list, make), ``{prefix}/subscriptions/{id}`` (remove), ``{prefix}/deliveries``."""

    async def subscriptions(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(publisher.listed())
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("The subscription must be a JSON object")
            return JSONResponse(publisher.subscribe(body))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)

    async def subscription(request: Request) -> Response:
        if not publisher.unsubscribe(request.path_params["subscription_id"]):
            return JSONResponse({"message": "no such subscription"}, status_code=404)
        return JSONResponse({"deleted": True})

    async def deliveries(request: Request) -> Response:
        return JSONResponse({"pending": publisher.pending, "deliveries": publisher.deliveries})

    return [
        Route(f"{prefix}/subscriptions", subscriptions, methods=["GET", "POST"]),
        Route(f"{prefix}/subscriptions/{{subscription_id}}", subscription, methods=["DELETE"]),
        Route(f"{prefix}/deliveries", deliveries, methods=["GET"]),
    ]
