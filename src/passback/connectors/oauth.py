"""OAuth 2 client credentials: the one rule every connector's token request follows.

A token answer means one of four things, whatever the connector:

* ``200`` with an ``access_token``: the token;
* ``401``, or ``400`` with ``error=invalid_client``: the credentials are refused
  (:class:`~passback.errors.AuthRefused`, whose message says to check the client id
  and secret);
* ``429`` or ``5xx`` (and a timeout or a reset connection): the server is unavailable
  for now; the request is repeated with backoff, honouring ``Retry-After`` (seconds or
  an HTTP date), and after the last attempt the error names the token URL and says the
  server was unavailable (:class:`~passback.errors.OutcomeUnknown`), not the credentials;
* any other answer: a refusal (:class:`~passback.errors.Refused`) naming the status and
  the body's ``error``.

:func:`obtain_token` runs that rule over any HTTP library (the caller sends one request
and says which exceptions are its transport failures); :class:`SharedFetch` lets
concurrent requests share one fetch; :class:`ClientCredentials` is the rule as an
``httpx.Auth``. authlib's own httpx client is being moved to another HTTP package;
passback keeps one HTTP stack (httpx) and takes authlib's token type for the expiry
arithmetic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.oauth2.rfc6749 import OAuth2Token

from passback.connectors.base import json_body
from passback.connectors.http import RetryPolicy, default_timeout, parse_retry_after
from passback.connectors.memory import ProcessMemory, token_key
from passback.errors import AuthRefused, OutcomeUnknown, Refused

CHECK_CREDENTIALS = "Check the client id and secret and save the connection again."


@dataclass(frozen=True)
class TokenAnswer:
    """What a token endpoint answered: the status, the body as parsed, ``Retry-After`` in seconds."""

    status: int
    body: Any
    retry_after: float | None = None


@dataclass(frozen=True)
class TryAgain:
    """The verdict on an answer that means "not now": why, and how long the server asked to wait."""

    reason: str
    wait: float | None = None


def judge_token_answer(system: str, url: str, answer: TokenAnswer) -> dict[str, Any] | TryAgain:
    """The token (the answer's body), or :class:`TryAgain`; raises when the answer is a refusal."""
    body = answer.body if isinstance(answer.body, dict) else {}
    status = answer.status
    error = str(body.get("error") or "")
    if status == 200:
        if body.get("access_token"):
            return body
        raise Refused(None, f"{system} answered the token request at {url} without an access_token.", status)
    if status == 401 or (status == 400 and error == "invalid_client"):
        named = f"HTTP {status}: {error}" if error else f"HTTP {status}"
        raise AuthRefused(None, f"{system} refused the client credentials at {url} ({named}). {CHECK_CREDENTIALS}",
                          status)
    if status == 429 or 500 <= status <= 599:
        return TryAgain(f"HTTP {status}", answer.retry_after)
    description = str(body.get("error_description") or "")
    named = error + (f" ({description})" if description else "") if error else "no error named"
    raise Refused(None, f"{system} refused the token request at {url}: HTTP {status}, {named}.", status)


async def obtain_token(
    system: str,
    url: str,
    send: Callable[[], Awaitable[TokenAnswer]],
    *,
    attempts: int,
    backoff: Callable[[int], float],
    transport_errors: tuple[type[BaseException], ...],
) -> dict[str, Any]:
    """Ask for a token up to ``attempts`` times by the rule above; the token's fields.

    ``send`` makes one request; an exception in ``transport_errors`` (no connection, a
    timeout, a reset) counts as "not now", like a 503. A token request has no effect
    worth guarding, so it is always safe to repeat. Between attempts the pause is the
    backoff or the server's ``Retry-After``, whichever is longer.
    """
    reason = "no attempt"
    for attempt in range(max(attempts, 1)):
        wait: float | None = None
        try:
            answer = await send()
        except transport_errors as exc:
            reason = f"no answer: {exc.__class__.__name__}"
        else:
            verdict = judge_token_answer(system, url, answer)
            if not isinstance(verdict, TryAgain):
                return verdict
            reason, wait = verdict.reason, verdict.wait
        if attempt + 1 < attempts:
            await asyncio.sleep(max(wait or 0.0, backoff(attempt)))
    raise OutcomeUnknown(
        f"{system}'s token endpoint {url} was unavailable: no token after {attempts} attempts "
        f"(last: {reason}). The server was unavailable (not a problem with the credentials); try again later.")


class SharedFetch:
    """One token fetch at a time, shared by every request that needs it.

    A request that was waiting while a fetch failed gets that failure, rather than
    starting its own round of retries: eight requests in flight against a token
    endpoint that is down make one round of attempts, not eight.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._rounds = 0
        self._failure: Exception | None = None

    async def run(self, needed: Callable[[], bool], fetch: Callable[[], Awaitable[None]]) -> None:
        seen = self._rounds
        async with self._lock:
            if not needed():
                return
            if self._failure is not None and self._rounds > seen:
                raise self._failure
            try:
                await fetch()
            except Exception as exc:
                self._failure = exc
                self._rounds += 1
                raise
            self._failure = None
            self._rounds += 1


class ClientCredentials(httpx.Auth):
    """Client credentials as an ``httpx.Auth``: fetch, cache, refresh on expiry or 401.

    The token request goes out on a client of its own rather than through the auth
    flow, so that its timeouts and resets are retried here (a token request is safe to
    repeat) and never taken for the loss of the request it was fetched for.

    With ``memory`` (:mod:`passback.connectors.memory`) a token outlives the client: the next
    run of the process starts with it instead of asking for one.
    """

    requires_response_body = True

    def __init__(self, token_url: str, client_id: str, client_secret: str, leeway: int = 60, *,
                 system: str = "The server", policy: RetryPolicy | None = None,
                 timeout: httpx.Timeout | None = None, memory: ProcessMemory | None = None,
                 scope: str = "") -> None:
        self.token_url = token_url
        self.credentials = httpx.BasicAuth(client_id, client_secret)
        self.memory = memory
        self._key = token_key(token_url, client_id, client_secret, scope)
        self.leeway = leeway
        self.system = system
        self.policy = policy or RetryPolicy()
        self.timeout = timeout or default_timeout()
        self.token: OAuth2Token | None = None
        self.fetched = 0
        self._shared = SharedFetch()
        self._client: httpx.AsyncClient | None = None

    async def _send(self) -> TokenAnswer:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        response = await self._client.post(
            self.token_url, data={"grant_type": "client_credentials"},
            headers={"Accept": "application/json"}, auth=self.credentials)
        return TokenAnswer(response.status_code, json_body(response.content),
                           parse_retry_after(response.headers.get("retry-after")))

    async def _fetch(self) -> None:
        body = await obtain_token(self.system, self.token_url, self._send, attempts=self.policy.attempts,
                                  backoff=self.policy.backoff, transport_errors=(httpx.TransportError,))
        self.token = OAuth2Token.from_dict(body)
        self.fetched += 1
        if self.memory is not None:
            self.memory.keep_token(self._key, self.token)

    async def fetch_token(self) -> None:
        """Fetch a token now (a connection check): refusals and unavailability raise as they are."""
        await self._shared.run(lambda: True, self._fetch)

    def _stale(self) -> bool:
        return self.token is None or bool(self.token.is_expired(leeway=self.leeway))

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.token is None and self.memory is not None:
            self.token = self.memory.token(self._key)
        if self._stale():
            await self._shared.run(self._stale, self._fetch)
        assert self.token is not None
        used = self.token
        request.headers["Authorization"] = f"Bearer {used['access_token']}"
        response = yield request
        await response.aread()
        if response.status_code == 401:
            await self._shared.run(lambda: self.token is used, self._fetch)
            assert self.token is not None
            request.headers["Authorization"] = f"Bearer {self.token['access_token']}"
            yield request

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
