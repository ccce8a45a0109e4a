"""PowerSchool's HTTP client: OAuth 2 plugin credentials, retries, paged v1 reads.

The plugin's token comes from ``/oauth/access_token`` by client credentials; every
request goes through :class:`~passback.connectors.http.HttpClient` (a cap on requests in
flight, retries with backoff). Shared by the gradebook destination and the posted-grades
reader.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from passback.connectors.aio_transport import AiohttpTransport
from passback.connectors.http import PASS, GaveUp, HttpClient, RetryableError, RetryPolicy, default_limits, default_timeout
from passback.connectors.limits import Limiter
from passback.connectors.memory import ProcessMemory
from passback.connectors.oauth import ClientCredentials
from passback.connectors.powerschool.errors import refused
from passback.errors import DestinationError, OutcomeUnknown
from passback.jsontext import loads

PAGE_SIZE = 100


class PowerSchoolClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        concurrency: int = 8,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        limiter: Limiter | None = None,
        memory: ProcessMemory | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.memory = memory
        self._cache: dict[str, asyncio.Future[list[Any]]] = {}
        self.auth = ClientCredentials(f"{self.base_url}/oauth/access_token", client_id, client_secret,
                                      system="PowerSchool", policy=policy, timeout=default_timeout(timeout),
                                      memory=memory)
        self.http = HttpClient(
            httpx.AsyncClient(
                base_url=self.base_url,
                auth=self.auth,
                timeout=default_timeout(timeout),
                limits=default_limits(concurrency),
                headers={"Accept": "application/json"},
                transport=AiohttpTransport(concurrency),
            ),
            name="powerschool",
            concurrency=concurrency,
            limiter=limiter,
            policy=policy,
            classify=self._classify,
        )

    @staticmethod
    def _classify(response: httpx.Response) -> RetryableError | object | None:
        if response.status_code == 500 and "Unable to find" in response.text:
            return PASS  # a real answer about a deleted assignment, not a passing fault
        if response.status_code == 412 and "Resubmit" in response.text:
            return RetryableError("PowerSchool asked to resubmit")
        return None

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; the plugin's token is fetched by the rule of ``connectors.oauth``
        (its refusals and unavailability raise from here as they are).

        A JSON body is encoded here by orjson (httpx's own encoding was a tenth of a district
        sync's CPU: every score batch is a body of thirty scores)."""
        if kwargs.get("json") is not None:
            kwargs["content"] = orjson.dumps(kwargs.pop("json"))
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Content-Type": "application/json"}
        try:
            return await self.http.request(method, path, **kwargs)
        except GaveUp as exc:
            raise OutcomeUnknown(str(exc)) from exc

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        if response.status_code >= 400:
            raise refused(response)
        return loads(response.content)

    async def get_pages(self, path: str, plural: str, singular: str) -> list[Any]:
        rows: list[Any] = []
        page = 1
        while True:
            body = await self.get_json(path, {"page": page, "pagesize": PAGE_SIZE})
            chunk = (body.get(plural) or {}).get(singular) or []
            if isinstance(chunk, dict):
                chunk = [chunk]
            rows.extend(chunk)
            if len(chunk) < PAGE_SIZE:
                return rows
            page += 1

    async def cached_pages(self, path: str, plural: str, singular: str, *, fresh: bool = False) -> list[Any]:
        """A listing read once per client and shared by every caller (a school's students).

        A read cache, not state of the conversation: every course of a run asks for the
        same schools' students, and they do not change within a run. With the process's
        memory the listing also serves later runs while its count is unchanged (one request
        instead of every page); ``fresh`` reads it whole again (the caller found it stale).
        """
        if fresh or path not in self._cache:
            self._cache[path] = asyncio.ensure_future(self._remembered_pages(path, plural, singular, fresh))
        return await asyncio.shield(self._cache[path])

    async def _remembered_pages(self, path: str, plural: str, singular: str, fresh: bool) -> list[Any]:
        kept = None if fresh or self.memory is None else self.memory.listing(self.base_url, path)
        total = await self._count(path)
        if kept is not None and total == len(kept):
            return kept
        rows = await self.counted_pages(path, plural, singular, total=total)
        if self.memory is not None and total is not None:
            self.memory.keep_listing(self.base_url, path, rows)
        return rows

    async def _count(self, path: str) -> int | None:
        """The listing's ``/count``, or None when the server gives none."""
        try:
            return int((await self.get_json(f"{path}/count"))["resource"]["count"])
        except (DestinationError, KeyError, TypeError, ValueError):
            return None

    async def counted_pages(self, path: str, plural: str, singular: str, *, total: int | None) -> list[Any]:
        """A long listing read side by side, from its ``/count`` (``total``, just read): every page at once.

        A school of 6,000 students is 60 pages; read one after another they took longer than
        the rest of a course's reads together. A listing without a count (None) is read page by page.
        """
        if total is None:
            return await self.get_pages(path, plural, singular)
        pages = await asyncio.gather(*(self._page(path, plural, singular, page)
                                       for page in range(1, max(1, -(-total // PAGE_SIZE)) + 1)))
        rows = [row for chunk in pages for row in chunk]
        if len(pages[-1]) == PAGE_SIZE:  # grown since it was counted: the rest page by page
            page = len(pages) + 1
            while chunk := await self._page(path, plural, singular, page):
                rows.extend(chunk)
                if len(chunk) < PAGE_SIZE:
                    break
                page += 1
        return rows

    async def _page(self, path: str, plural: str, singular: str, page: int) -> list[Any]:
        body = await self.get_json(path, {"page": page, "pagesize": PAGE_SIZE})
        chunk = (body.get(plural) or {}).get(singular) or []
        return [chunk] if isinstance(chunk, dict) else list(chunk)

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            await self.auth.aclose()
