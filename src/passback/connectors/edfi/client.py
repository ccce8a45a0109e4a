"""Ed-Fi ODS/API client: discovery, client-credentials token, upserts, deletes, paged reads
(read to a short page, never on Total-Count alone), and the newest change version.

Built on aiohttp rather than httpx: on the same emulator and machine, aiohttp posted
grades about five times faster (1,800 vs 360 requests/s, 4,000 POSTs, concurrency 8),
and a state-reporting run is tens of thousands of POSTs. Every Ed-Fi write here is
idempotent (POST upserts by natural key; DELETE of a gone record is 404), so every
failure that is not a refusal is retried with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import Any

import aiohttp
import orjson

from passback.connectors.base import RecordAnswer, json_body
from passback.connectors.edfi.errors import not_an_ods, read_refused
from passback.connectors.http import parse_retry_after, request_meter
from passback.connectors.oauth import SharedFetch, TokenAnswer, obtain_token
from passback.errors import OutcomeUnknown

RETRY_STATUSES = frozenset({429, 500, 501, 502, 503, 504})
PAGE = 500


EdFiAnswer = RecordAnswer


class EdFiClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str, *, concurrency: int = 8,
                 attempts: int = 6, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.concurrency = concurrency
        self.attempts = attempts
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.timeout_seconds = timeout
        self.urls: dict[str, str] = {}
        self.token: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._token_fetch = SharedFetch()
        self.requests = 0
        self._posts: dict[str, str] = {}

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency), timeout=self.timeout,
                json_serialize=lambda v: json.dumps(v, separators=(",", ":")))
        return self._session

    def _count(self, status: int) -> None:
        self.requests += 1
        meter = request_meter.get()
        if meter is not None:
            meter["edfi"] += 1

    async def _plain(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """A request made before there is a token (discovery), retried alike."""
        session = await self._open()
        problem: object = None
        for attempt in range(self.attempts):
            wait: float | None = None
            try:
                async with session.request(method, url, **kwargs) as response:
                    self._count(response.status)
                    if response.status in RETRY_STATUSES:
                        problem = f"HTTP {response.status}"
                        wait = parse_retry_after(response.headers.get("Retry-After"))
                    else:
                        return response.status, json_body(await response.read())
            except (TimeoutError, aiohttp.ClientError) as exc:
                problem = exc
            await asyncio.sleep(_pause(wait, attempt))
        raise OutcomeUnknown(f"{method} {url}: no answer after {self.attempts} attempts ({problem})")

    async def discover(self) -> dict[str, str]:
        if not self.urls:
            _, body = await self._plain("GET", self.base_url + "/")
            self.urls = body.get("urls") or {}
            if "oauth" not in self.urls or "dataManagementApi" not in self.urls:
                raise not_an_ods(self.base_url)
        return self.urls

    async def _authenticate(self, stale: str | None) -> str:
        """The token in hand, or a new one when there is none or ``stale`` is it (one fetch
        shared by every request waiting for it, by the rule of ``connectors.oauth``)."""
        await self._token_fetch.run(lambda: self.token is None or self.token == stale, self._fetch_token)
        assert self.token is not None
        return self.token

    async def _fetch_token(self) -> None:
        url = (await self.discover())["oauth"]
        session = await self._open()
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()

        async def send() -> TokenAnswer:
            async with session.post(url, data={"grant_type": "client_credentials"},
                                    headers={"Authorization": f"Basic {basic}"}) as response:
                self._count(response.status)
                return TokenAnswer(response.status, json_body(await response.read()),
                                   parse_retry_after(response.headers.get("Retry-After")))

        body = await obtain_token("Ed-Fi", url, send, attempts=self.attempts, backoff=_backoff,
                                  transport_errors=(aiohttp.ClientError, TimeoutError))
        self.token = str(body["access_token"])

    def resource_url(self, resource: str) -> str:
        return self.urls["dataManagementApi"].rstrip("/") + f"/ed-fi/{resource}"

    async def _send(self, method: str, url: str, *, body: bytes | None = None,
                    params: dict[str, Any] | None = None) -> tuple[int, Any, bytes]:
        session = await self._open()
        token = self.token or await self._authenticate(None)
        for attempt in range(self.attempts):
            headers = {"Authorization": f"Bearer {token}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            try:
                async with session.request(method, url, data=body, params=params, headers=headers) as response:
                    self._count(response.status)
                    if response.status == 401:
                        token = await self._authenticate(token)
                        continue
                    if response.status in RETRY_STATUSES:
                        await asyncio.sleep(_pause(parse_retry_after(response.headers.get("Retry-After")), attempt))
                        continue
                    return response.status, response.headers, await response.read()
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(_backoff(attempt))
        raise OutcomeUnknown(f"{method} {url}: no answer after {self.attempts} attempts")

    async def upsert(self, resource: str, record_json: bytes) -> EdFiAnswer:
        """POST one record, with the retries of ``_send`` (bulk sends go through libcurl)."""
        status, headers, payload = await self._send("POST", await self.post_url(resource), body=record_json)
        if status in (200, 201):
            location = headers.get("Location", "")
            return EdFiAnswer(status, location[location.rfind("/") + 1 :] or None)
        return EdFiAnswer(status, None, json_body(payload))

    async def post_url(self, resource: str) -> str:
        url = self._posts.get(resource)
        if url is None:
            await self.discover()
            url = self._posts[resource] = self.resource_url(resource)
        return url

    async def authenticate(self, stale: str | None = None) -> str:
        """A token, fetched anew when ``stale`` is the one in hand."""
        return await self._authenticate(stale)

    def count_many(self, requests: int) -> None:
        """Requests sent elsewhere (by the libcurl sender), counted as this client's."""
        self.requests += requests
        meter = request_meter.get()
        if meter is not None:
            meter["edfi"] += requests

    async def delete(self, resource: str, record_id: str) -> EdFiAnswer:
        await self.discover()
        status, _, payload = await self._send("DELETE", f"{self.resource_url(resource)}/{record_id}")
        return EdFiAnswer(status, record_id, json_body(payload))

    async def get_all(self, resource: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every record of a listing (a resource, or its ``deletes`` / ``keyChanges`` route).

        The first page asks for ``Total-Count``; when the header comes, the other pages are
        fetched side by side. The header is never trusted alone: a host may leave it out, and
        records may arrive while the pages are read, so the listing goes on page by page
        until a page comes back short.
        """
        await self.discover()
        url = self.resource_url(resource)
        first, total = await self._page(url, params, 0, counted=True)
        pages = [first]
        if total is not None and len(first) == PAGE:
            pages += await asyncio.gather(*(self._rows(url, params, offset) for offset in range(PAGE, total, PAGE)))
        offset = PAGE * len(pages)
        while len(pages[-1]) == PAGE:
            pages.append(await self._rows(url, params, offset))
            offset += PAGE
        return [row for rows in pages for row in rows]

    async def _rows(self, url: str, params: dict[str, Any] | None, offset: int) -> list[dict[str, Any]]:
        return (await self._page(url, params, offset))[0]

    async def _page(self, url: str, params: dict[str, Any] | None, offset: int,
                    counted: bool = False) -> tuple[list[dict[str, Any]], int | None]:
        """One page, and the Total-Count header when it was asked for and given."""
        query = {**(params or {}), "offset": offset, "limit": PAGE, **({"totalCount": "true"} if counted else {})}
        code, headers, body = await self._send("GET", url, params=query)
        if code != 200:
            raise read_refused(url, code, offset)
        total = headers.get("Total-Count")
        return list(orjson.loads(body)), int(total) if total is not None and total.isdigit() else None

    async def newest_change_version(self) -> int | None:
        """The ODS's newest change version, or None where change queries are off (404) or not offered."""
        url = (await self.discover()).get("changeQueries")
        if not url:
            return None
        target = url.rstrip("/") + "/availableChangeVersions"
        code, _, body = await self._send("GET", target)
        if code == 404:
            return None
        if code != 200:
            raise read_refused(target, code)
        return int(orjson.loads(body)["newestChangeVersion"])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _backoff(attempt: int) -> float:
    return min(8.0, 0.1 * 2**attempt) * (0.5 + random.random() / 2)


def _pause(retry_after: float | None, attempt: int) -> float:
    """The server's ``Retry-After`` when it asked for one (at least the backoff), else the backoff."""
    return max(retry_after, _backoff(attempt)) if retry_after is not None else _backoff(attempt)
