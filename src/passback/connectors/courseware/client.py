"""Courseware REST client: bearer token, limit/offset paging that follows ``paging.next``.

The contract is the one :mod:`passback.emulators.courseware` documents. Reads are
retried by the shared rule (429 with ``Retry-After``, 5xx, lost answers); the instructor
writes are PUTs of a value, so repeating one is harmless and they are retried too.
"""

from __future__ import annotations

from typing import Any

import httpx

from passback.connectors.courseware.errors import refused, unreachable
from passback.connectors.http import GaveUp, HttpClient, RetryPolicy, default_limits, default_timeout
from passback.connectors.limits import Limiter

PREFIX = "/api/v1"
PAGE_LIMIT = 100


class CoursewareClient:
    def __init__(self, base_url: str, token: str, *, concurrency: int = 8, page_limit: int = PAGE_LIMIT,
                 policy: RetryPolicy | None = None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, limiter: Limiter | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_limit = page_limit
        self.http = HttpClient(
            httpx.AsyncClient(base_url=self.base_url, timeout=default_timeout(timeout),
                              limits=default_limits(concurrency), transport=transport,
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}),
            name="courseware", concurrency=concurrency, limiter=limiter, policy=policy,
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

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._checked("GET", f"{PREFIX}{path}", params=params)).json()

    async def get_all(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every page of a listing: the first asked with ``limit``, the rest by ``paging.next``."""
        body = await self.get(path, {**(params or {}), "limit": self.page_limit, "offset": 0})
        rows = list(body.get("data") or [])
        while (body.get("paging") or {}).get("next"):
            body = (await self._checked("GET", body["paging"]["next"])).json()
            rows.extend(body.get("data") or [])
        return rows

    async def put(self, path: str, json: Any) -> Any:
        return (await self._checked("PUT", f"{PREFIX}{path}", json=json)).json()

    async def aclose(self) -> None:
        await self.http.aclose()
