"""Canvas REST client: bearer token, Link-header paging, and Canvas's throttle.

Canvas meters each token with a leaky bucket and reports what is left in
``X-Rate-Limit-Remaining``. The client slows itself down as the bucket fills, rather
than waiting to be refused; a refusal (403 "Rate Limit Exceeded", or 429) is retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from passback.connectors.aio_transport import AiohttpTransport
from passback.connectors.canvas.errors import refused, unreachable
from passback.connectors.http import (
    GaveUp,
    HttpClient,
    RetryableError,
    RetryPolicy,
    default_limits,
    default_timeout,
)
from passback.connectors.limits import Limiter

RATE_LIMITED_TEXT = "Rate Limit Exceeded"


class CanvasThrottle:
    """Paces requests from the bucket level Canvas reports.

    Below ``low_water`` units left, each request first waits for the bucket to drain
    by the difference (Canvas drains ``outflow`` units a second).
    """

    def __init__(self, low_water: float = 200.0, outflow: float = 10.0, max_pause: float = 5.0) -> None:
        self.low_water = low_water
        self.outflow = outflow
        self.max_pause = max_pause
        self.remaining: float | None = None
        self.paused_seconds = 0.0

    async def before_request(self) -> None:
        remaining = self.remaining
        if remaining is None or remaining >= self.low_water:
            return
        pause = min((self.low_water - remaining) / self.outflow, self.max_pause)
        self.paused_seconds += pause
        self.remaining = self.low_water  # the next caller need not wait for the same drain
        await asyncio.sleep(pause)

    def after_response(self, response: httpx.Response) -> None:
        value = response.headers.get("x-rate-limit-remaining")
        if value is not None:
            try:
                self.remaining = float(value)
            except ValueError:
                pass

    def classify(self, response: httpx.Response) -> RetryableError | None:
        throttled = response.status_code == 429 or (
            response.status_code == 403 and RATE_LIMITED_TEXT in response.text
        )
        if throttled:
            self.remaining = 0.0
            return RetryableError("Canvas rate limit exceeded", wait=min(self.max_pause, 1.0))
        return None


class CanvasClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        concurrency: int = 8,
        per_page: int = 100,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.per_page = per_page
        self.throttle = CanvasThrottle()
        self.http = HttpClient(
            httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=default_timeout(timeout),
                limits=default_limits(concurrency),
                transport=transport or AiohttpTransport(concurrency),
            ),
            name="canvas",
            concurrency=concurrency,
            limiter=limiter,
            policy=policy,
            classify=self.throttle.classify,
            before_request=self.throttle.before_request,
            after_response=self.throttle.after_response,
        )

    async def _checked(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, url, **kwargs)
        except GaveUp as exc:
            raise unreachable(exc) from exc
        refusal = refused(response, url)
        if refusal is not None:
            raise refusal
        return response

    async def get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None) -> Any:
        return (await self._checked("GET", f"/api/v1{path}", params=params)).json()

    async def get_all(self, path: str, params: list[tuple[str, Any]] | None = None, *, prefix: str = "/api/v1") -> list[Any]:
        """Every page of a listing, following the Link header's ``next``."""
        query = list(params or []) + [("per_page", self.per_page)]
        response = await self._checked("GET", f"{prefix}{path}", params=query)
        items = list(response.json())
        while "next" in response.links:
            response = await self._checked("GET", response.links["next"]["url"])
            items.extend(response.json())
        return items

    async def send(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._checked(method, f"/api/v1{path}", **kwargs)).json()

    async def aclose(self) -> None:
        await self.http.aclose()

