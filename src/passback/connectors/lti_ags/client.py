"""The HTTP client of an LTI Advantage platform: a token by signed client assertion, the services' media types, paging.

The token comes by OAuth 2 client credentials where the tool proves who it is with a JWT
it signs (the 1EdTech Security Framework, section 4.1, RFC 7523): ``client_assertion_type``
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a ``client_assertion``
signed RS256 with passback's LTI key (``kid`` in its header), whose ``iss`` and ``sub``
are the client id, ``aud`` the token URL, with a fresh ``jti``, ``iat`` and ``exp`` five
minutes on. Every other part of the token rule (retries, the shared fetch, a refresh on
expiry or on a 401) is :class:`~passback.connectors.oauth.ClientCredentials`'s.

Requests go through :class:`~passback.connectors.http.HttpClient`; a platform throttling
with Canvas's ``403 Rate Limit Exceeded`` is retried like a 429. A bearer token is sent
to the connection's own host and nowhere else: a URL on another host (in a section id or
a ``Link`` header) is refused before anything is sent.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import OAuth2Token
from joserfc import jwt
from joserfc.jwk import RSAKey

from passback.connectors.base import json_body
from passback.connectors.http import (
    GaveUp,
    HttpClient,
    RetryableError,
    RetryPolicy,
    default_limits,
    default_timeout,
    parse_retry_after,
)
from passback.connectors.limits import Limiter
from passback.connectors.lti_ags.errors import AUTH_FIX, refused
from passback.connectors.oauth import ClientCredentials, TokenAnswer, obtain_token
from passback.errors import AuthRefused, OutcomeUnknown, Refused

AGS_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
SCOPES = (AGS_SCOPE + "lineitem", AGS_SCOPE + "result.readonly", AGS_SCOPE + "score", NRPS_SCOPE)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_SECONDS = 300
LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE = "application/vnd.ims.lis.v1.score+json"
RESULTS = "application/vnd.ims.lis.v2.resultcontainer+json"
MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
PAGE_SIZE = 100
RATE_LIMITED_TEXT = "Rate Limit Exceeded"
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def client_assertion(client_id: str, audience: str, key: RSAKey, key_id: str, now: float | None = None) -> str:
    """The signed JWT that stands for a client secret: who the tool is, for which token endpoint, used once."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": issued, "exp": issued + ASSERTION_SECONDS,
              "jti": secrets.token_urlsafe(24)}
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key_id}, claims, key)


class AssertionCredentials(ClientCredentials):
    """OAuth 2 client credentials with a signed client assertion in place of a client secret.

    The token request's answers are judged by the rule of :mod:`passback.connectors.oauth`;
    a refusal of the assertion (Canvas answers ``400 invalid_request`` for a signature it
    cannot verify, ``401 invalid_client`` for an unknown client id) is a refusal of the
    connection's credentials, and says which to check.
    """

    def __init__(self, token_url: str, client_id: str, key: RSAKey, key_id: str, *, audience: str,
                 scopes: tuple[str, ...] = SCOPES, system: str = "The LTI platform", policy: RetryPolicy | None = None,
                 timeout: httpx.Timeout | None = None) -> None:
        super().__init__(token_url, client_id, "", system=system, policy=policy, timeout=timeout)
        self.client_id = client_id
        self.key = key
        self.key_id = key_id
        self.audience = audience
        self.scopes = scopes
        self.last_answer: TokenAnswer | None = None

    async def _send(self) -> TokenAnswer:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(self.client_id, self.audience, self.key, self.key_id),
                "scope": " ".join(self.scopes)}
        response = await self._client.post(self.token_url, data=form, headers={"Accept": "application/json"})
        self.last_answer = TokenAnswer(response.status_code, json_body(response.content),
                                       parse_retry_after(response.headers.get("retry-after")))
        return self.last_answer

    def _refusal(self) -> str:
        answer = self.last_answer
        if answer is None:
            return "no answer"
        body = answer.body if isinstance(answer.body, dict) else {}
        named = str(body.get("error") or "no error named")
        if body.get("error_description"):
            named += f": {body['error_description']}"
        return f"HTTP {answer.status}, {named}"

    async def _fetch(self) -> None:
        try:
            body = await obtain_token(self.system, self.token_url, self._send, attempts=self.policy.attempts,
                                      backoff=self.policy.backoff, transport_errors=(httpx.TransportError,))
        except Refused as exc:
            if exc.status in (400, 401):
                raise AuthRefused(None, f"{self.system} refused passback's client assertion at {self.token_url} "
                                        f"({self._refusal()}). Check that the client id {self.client_id} "
                                        f"is the developer key's id and that the key's public JWK (URL) publishes "
                                        f"passback's key {self.key_id}. {AUTH_FIX}", exc.status) from exc
            raise
        self.token = OAuth2Token.from_dict(body)
        self.fetched += 1


def next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, if there is one."""
    for part in response.headers.get_list("link"):
        found = _NEXT.search(part)
        if found:
            return found.group(1)
    return None


class AgsClient:
    """One platform's LTI Advantage services, over one pool, with one token."""

    def __init__(self, base_url: str, client_id: str, token_url: str, private_key: str, key_id: str, *,
                 audience: str | None = None, scopes: tuple[str, ...] = SCOPES, concurrency: int = 8,
                 policy: RetryPolicy | None = None, timeout: float = 30.0, limiter: Limiter | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = (urlsplit(self.base_url).netloc or "").lower()
        key = RSAKey.import_key(private_key.encode())
        self.auth = AssertionCredentials(token_url, client_id, key, key_id, audience=audience or token_url,
                                         scopes=scopes, policy=policy, timeout=default_timeout(timeout))
        self.http = HttpClient(
            httpx.AsyncClient(base_url=self.base_url, auth=self.auth, timeout=default_timeout(timeout),
                              limits=default_limits(concurrency)),
            name="lti_ags", concurrency=concurrency, limiter=limiter, policy=policy, classify=self._classify,
        )

    @staticmethod
    def _classify(response: httpx.Response) -> RetryableError | None:
        if response.status_code == 403 and RATE_LIMITED_TEXT in response.text:
            return RetryableError("the platform's rate limit was exceeded", wait=1.0)
        return None

    def on_platform(self, url: str) -> bool:
        """Whether ``url`` is an absolute http(s) URL on the connection's host (where the token may go)."""
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == self.host

    def checked(self, url: str) -> str:
        if not self.on_platform(url):
            raise Refused(None, f"{url} is not on the platform's host {self.host}; passback sends its access token "
                                "to the connection's host only. Check the course's line items URL.")
        return url

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; a lost answer to a POST raises ``UncertainWrite`` (the caller reads back)."""
        try:
            return await self.http.request(method, self.checked(url), **kwargs)
        except GaveUp as exc:
            raise OutcomeUnknown(str(exc)) from exc

    async def get_json(self, url: str, accept: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.request("GET", url, params=params, headers={"Accept": accept})
        if response.status_code >= 400:
            raise refused(response)
        return response.json()

    async def get_pages(self, url: str, accept: str, params: dict[str, Any] | None = None,
                        items: str | None = None) -> list[Any]:
        """Every page of a container, following ``Link: rel="next"``; ``items`` names the list in an object body."""
        return (await self.get_all(url, accept, params, items))[1]

    async def get_all(self, url: str, accept: str, params: dict[str, Any] | None = None,
                      items: str | None = None) -> tuple[Any, list[Any]]:
        """The first page's body (an NRPS container names its context there) and every page's rows."""
        rows: list[Any] = []
        first: Any = None
        query: dict[str, Any] | None = {"limit": PAGE_SIZE, **(params or {})}
        while True:
            response = await self.request("GET", url, params=query, headers={"Accept": accept})
            if response.status_code >= 400:
                raise refused(response)
            body = response.json()
            first = body if first is None else first
            chunk = body.get(items) if items and isinstance(body, dict) else body
            rows.extend(chunk or [])
            following = next_link(response)
            if following is None:
                return first, rows
            url, query = following, None  # the next URL carries the query

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            await self.auth.aclose()
