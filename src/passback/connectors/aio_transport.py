"""An httpx transport that sends through aiohttp: the connectors keep httpx's API, the gradebook path gets a cheaper client.

Profiling a district sync showed most of passback's CPU in httpx's own connection layer
(httpcore and anyio): about 2.5 times what aiohttp spends on the same requests. The
connectors speak httpx (requests, responses, auth flows, the retry rule in
:mod:`passback.connectors.http`), so only the layer under it changes: this transport hands
each request to an aiohttp session and gives back an httpx response.

What the retry rule needs is kept: aiohttp's failures become the httpx exceptions the rule
reads (could not connect, no answer in time, cut off after sending). Bodies are passed on
as received (no decompression here: httpx decodes), cookies are httpx's to keep.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    given: dict[str, Any] = request.extensions.get("timeout") or {}
    return aiohttp.ClientTimeout(total=None, sock_connect=given.get("connect"), sock_read=given.get("read"))


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most ``limit`` connections, kept alive between requests; the session opens with the first request."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit, enable_cleanup_closed=True),
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            async with session.request(request.method, str(request.url), headers=headers, data=body or None,
                                       allow_redirects=False, timeout=_timeout(request),
                                       skip_auto_headers=("User-Agent", "Accept-Encoding")) as answer:
                content = await answer.read()
                status, raw_headers = answer.status, answer.raw_headers
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or exc.__class__.__name__, request=request) from exc
        return httpx.Response(status, headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers],
                              content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
