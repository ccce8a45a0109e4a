"""Schoology REST client: two-legged OAuth 1.0a (authlib's signer), start/limit paging.

Every request is signed afresh (Schoology refuses a reused nonce), including the
follow-up of a 303 redirect, which is why redirects are followed here and not by httpx.
Schoology's authentication page asks two-legged requests to carry ``oauth_token`` all
the same, as an empty string (``oauth_token=""``), and its public clients do; authlib
leaves an empty token out, so :class:`TwoLeggedSigner` puts it back (and signs it).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx
from authlib.oauth1 import SIGNATURE_HMAC_SHA1, ClientAuth

from passback.connectors.http import GaveUp, HttpClient, RetryPolicy, default_limits, default_timeout
from passback.connectors.limits import Limiter
from passback.connectors.schoology.errors import refused, unreachable

PAGE_LIMIT = 200


class TwoLeggedSigner(ClientAuth):
    """authlib's OAuth 1.0a signer, with the empty ``oauth_token`` Schoology documents for two-legged calls."""

    def get_oauth_params(self, nonce: str, timestamp: str) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = super().get_oauth_params(nonce, timestamp)
        if not self.token:
            params.append(("oauth_token", ""))
        return params


class OAuth1(httpx.Auth):
    """Signs each request (and each retry) afresh: Schoology refuses a reused timestamp and nonce."""

    def __init__(self, consumer_key: str, consumer_secret: str) -> None:
        self.signer = TwoLeggedSigner(consumer_key, consumer_secret, signature_method=SIGNATURE_HMAC_SHA1,
                                      realm="Schoology API")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body = request.content if request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded") else b""
        _, headers, _ = self.signer.sign(request.method, str(request.url), {}, body)
        request.headers["Authorization"] = headers["Authorization"]
        yield request


class SchoologyClient:
    def __init__(self, base_url: str, consumer_key: str, consumer_secret: str, *, concurrency: int = 8,
                 policy: RetryPolicy | None = None, timeout: float = 30.0, limiter: Limiter | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = HttpClient(
            httpx.AsyncClient(base_url=self.base_url, auth=OAuth1(consumer_key, consumer_secret),
                              timeout=default_timeout(timeout), limits=default_limits(concurrency),
                              headers={"Accept": "application/json"}),
            name="schoology", concurrency=concurrency, limiter=limiter, policy=policy,
        )

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, url, **kwargs)
            if response.status_code == 303:
                response = await self.http.request("GET", response.headers["location"])
        except GaveUp as exc:
            raise unreachable(exc) from exc
        refusal = refused(response, url)
        if refusal is not None:
            raise refusal
        return response

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", f"/v1{path}", params=params)).json()

    async def get_all(self, path: str, wrapper: str) -> list[Any]:
        """Every page, following ``links.next``."""
        body = await self.get(path, {"start": 0, "limit": PAGE_LIMIT})
        rows = list(_rows(body, wrapper))
        while (body.get("links") or {}).get("next"):
            body = (await self.request("GET", body["links"]["next"])).json()
            rows.extend(_rows(body, wrapper))
        return rows

    async def send(self, method: str, path: str, json: Any) -> httpx.Response:
        """A write; a POST whose answer is lost raises :class:`~passback.connectors.http.UncertainWrite`."""
        return await self.request(method, f"/v1{path}", json=json)

    async def aclose(self) -> None:
        await self.http.aclose()


def _rows(body: dict[str, Any], wrapper: str) -> list[Any]:
    if wrapper == "grade":
        return list(((body.get("grades") or {}).get("grade")) or [])
    return list(body.get(wrapper) or [])
