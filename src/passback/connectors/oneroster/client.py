"""OneRoster's HTTP client: OAuth 2 client credentials with scopes, retries, limit/offset paging.

Paths by version (``url`` is the server's base, before ``/ims/oneroster``):

* ``v1p1``: one service, ``/ims/oneroster/v1p1/...`` for rostering and gradebook alike;
* ``v1p2``: ``/ims/oneroster/rostering/v1p2/...`` and ``/ims/oneroster/gradebook/v1p2/...``.

The token is asked for with the scopes passback uses, by their 1EdTech names
(``https://purl.imsglobal.org/spec/or/{version}/scope/...``): ``roster-core.readonly`` for
classes, rosters and sessions, and ``gradebook.readonly``, ``gradebook.createput``,
``gradebook.delete`` for the gradebook. Every request goes through
:class:`~passback.connectors.http.HttpClient`: a 429 or 503 is retried honouring
``Retry-After``, other 5xx and lost answers only for idempotent requests, which every
OneRoster write is (a PUT by ``sourcedId``, a DELETE).

Collections are read with ``limit``/``offset``: the ``Link`` header's ``rel="next"`` is
followed where the server gives one (a Link header without it means the last page), else
``X-Total-Count`` says when the last page was
read, and a server that sends neither (the spec makes both optional) is read until a page
comes back shorter than asked for. A page that brings no new ``sourcedId`` ends the read
too, so a server that ignores ``offset`` cannot keep passback paging forever.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx

from passback.connectors.base import json_body
from passback.connectors.http import (
    GaveUp,
    HttpClient,
    RetryPolicy,
    default_limits,
    default_timeout,
    parse_retry_after,
)
from passback.connectors.limits import Limiter
from passback.connectors.memory import ProcessMemory
from passback.connectors.oauth import ClientCredentials, TokenAnswer
from passback.connectors.oneroster.errors import refused
from passback.errors import OutcomeUnknown

PAGE_SIZE = 100
SCOPES = ("roster-core.readonly", "gradebook.readonly", "gradebook.createput", "gradebook.delete")


def scope_for(version: str) -> str:
    """The space-separated scopes a token is asked for, in 1EdTech's spelling for ``version``."""
    return " ".join(f"https://purl.imsglobal.org/spec/or/{version}/scope/{name}" for name in SCOPES)


def service_paths(version: str) -> tuple[str, str]:
    """(rostering, gradebook) base paths of a version."""
    if version == "v1p2":
        return "/ims/oneroster/rostering/v1p2", "/ims/oneroster/gradebook/v1p2"
    return "/ims/oneroster/v1p1", "/ims/oneroster/v1p1"


def segment(sourced_id: str) -> str:
    """A sourcedId as one path segment (they are strings and may hold any character)."""
    return quote(sourced_id, safe="")


class ScopedClientCredentials(ClientCredentials):
    """The shared client-credentials rule, with the ``scope`` OneRoster servers require in the token request."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *, scope: str,
                 policy: RetryPolicy | None = None, timeout: httpx.Timeout | None = None,
                 memory: ProcessMemory | None = None) -> None:
        super().__init__(token_url, client_id, client_secret, system="The OneRoster server", policy=policy,
                         timeout=timeout, memory=memory, scope=scope)
        self.scope = scope

    async def _send(self) -> TokenAnswer:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        response = await self._client.post(
            self.token_url, data={"grant_type": "client_credentials", "scope": self.scope},
            headers={"Accept": "application/json"}, auth=self.credentials)
        return TokenAnswer(response.status_code, json_body(response.content),
                           parse_retry_after(response.headers.get("retry-after")))


class OneRosterClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        version: str = "v1p1",
        token_url: str | None = None,
        concurrency: int = 8,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        limiter: Limiter | None = None,
        memory: ProcessMemory | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.rostering, self.gradebook = service_paths(version)
        self.page_size = page_size
        self._cache: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}
        self.auth = ScopedClientCredentials(token_url or f"{self.base_url}/oauth/token", client_id, client_secret,
                                            scope=scope_for(version), policy=policy,
                                            timeout=default_timeout(timeout), memory=memory)
        self.http = HttpClient(
            httpx.AsyncClient(base_url=self.base_url, auth=self.auth, timeout=default_timeout(timeout),
                              limits=default_limits(concurrency), headers={"Accept": "application/json"}),
            name="oneroster", concurrency=concurrency, limiter=limiter, policy=policy,
        )

    def href(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; after the last attempt the outcome is unknown (:class:`OutcomeUnknown`)."""
        try:
            return await self.http.request(method, path, **kwargs)
        except GaveUp as exc:
            raise OutcomeUnknown(str(exc)) from exc

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        if response.status_code >= 400:
            raise refused(response, f"GET {path}")
        return response.json()

    async def pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every object of a collection, all pages (see the module's note on how the end is found)."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        url: str = path
        query: dict[str, Any] | None = {**(params or {}), "limit": self.page_size, "offset": 0}
        read = 0
        while True:
            response = await self.request("GET", url, params=query)
            if response.status_code >= 400:
                raise refused(response, f"GET {path}")
            chunk = (response.json() or {}).get(key) or []
            fresh = [row for row in chunk if str(row.get("sourcedId")) not in seen]
            seen.update(str(row.get("sourcedId")) for row in fresh)
            rows.extend(fresh)
            read += len(chunk)
            if not chunk or not fresh:
                return rows
            following = response.links.get("next", {}).get("url")
            if following:
                url, query = following, None
                continue
            if response.links:
                return rows  # the server pages by Link and names no next page
            total = response.headers.get("x-total-count", "").strip()
            if total.isdigit() and read >= int(total):
                return rows
            if not total.isdigit() and len(chunk) < self.page_size:
                return rows
            url, query = path, {**(params or {}), "limit": self.page_size, "offset": read}

    async def cached_pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A listing read once per client and shared by every caller (categories, grading periods).

        A read cache, not state of the conversation: every course of a run needs the same
        district-wide lists, and they do not change within a run.
        """
        cache_key = f"{path}?{sorted((params or {}).items())}"
        if cache_key not in self._cache:
            self._cache[cache_key] = asyncio.ensure_future(self.pages(path, key, params))
        try:
            return await asyncio.shield(self._cache[cache_key])
        except Exception:
            self._cache.pop(cache_key, None)  # a failed read is not kept: the next caller asks again
            raise

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            await self.auth.aclose()
