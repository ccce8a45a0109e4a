"""OAuth 2 client credentials as an ``httpx.Auth``: fetch, cache, refresh on expiry or 401.

authlib's own httpx client is being moved to another HTTP package; passback keeps one
HTTP stack (httpx) and takes authlib's token type for the expiry arithmetic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import httpx
from authlib.oauth2.rfc6749 import OAuth2Token


class TokenRefused(RuntimeError):
    pass


class ClientCredentials(httpx.Auth):
    requires_response_body = True

    def __init__(self, token_url: str, client_id: str, client_secret: str, leeway: int = 60) -> None:
        self.token_url = token_url
        self.credentials = httpx.BasicAuth(client_id, client_secret)
        self.leeway = leeway
        self.token: OAuth2Token | None = None
        self.fetched = 0
        self._lock = asyncio.Lock()

    def _token_request(self) -> httpx.Request:
        request = httpx.Request(
            "POST", self.token_url, data={"grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
        )
        return next(self.credentials.auth_flow(request))

    async def _keep(self, response: httpx.Response) -> None:
        await response.aread()
        if response.status_code != 200:
            raise TokenRefused(f"HTTP {response.status_code}: {response.text[:200]}")
        self.token = OAuth2Token.from_dict(response.json())
        self.fetched += 1

    def _stale(self) -> bool:
        return self.token is None or bool(self.token.is_expired(leeway=self.leeway))

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._stale():
            async with self._lock:
                if self._stale():
                    await self._keep((yield self._token_request()))
        assert self.token is not None
        used = self.token
        request.headers["Authorization"] = f"Bearer {used['access_token']}"
        response = yield request
        await response.aread()
        if response.status_code == 401:
            async with self._lock:
                if self.token is used:
                    await self._keep((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self.token['access_token']}"
            yield request
