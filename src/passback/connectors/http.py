"""What every connector's HTTP client shares: pooling, a concurrency cap, retries.

Retries follow one rule: a request that had no effect (throttled, refused with 5xx,
connection refused) is retried; a request whose effect is unknown (timed out or cut
off after it was sent) is retried only when it is idempotent. A create whose answer
was lost raises :class:`UncertainWrite`, and the caller decides (look up, then adopt).
"""

from __future__ import annotations

import contextvars
import datetime
import email.utils
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from passback.connectors.limits import Limiter, LimiterUnavailable, LocalLimiter

request_meter: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar("request_meter", default=None)
"""Requests sent by the current run, by system; each run sets its own, tasks inherit it."""

IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryableError(Exception):
    """The request had no effect, or is safe to repeat; try again after ``wait`` seconds."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class UncertainWrite(Exception):
    """A non-idempotent request was sent and its answer lost: it may have taken effect."""


class GaveUp(Exception):
    """Every retry failed; the last reason is the message."""


@dataclass
class RetryPolicy:
    attempts: int = 6
    initial_wait: float = 0.2
    max_wait: float = 8.0

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (0 first): doubling, capped, jittered."""
        return min(self.max_wait, self.initial_wait * 2**attempt) * (0.5 + random.random() / 2)


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    by_status: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "retries": self.retries,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())}}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.

    ``None`` when there is no usable value (absent, empty, garbled, not finite); a date
    without a zone is GMT, as HTTP dates are; a time already past is 0.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def retry_after_seconds(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


class _WaitWithRetryAfter:
    def __init__(self, policy: RetryPolicy) -> None:
        self.backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait)

    def __call__(self, retry_state: Any) -> float:
        backoff = self.backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableError) and exc.wait is not None:
            return max(exc.wait, backoff)
        return backoff


PASS = object()
"""Returned by a ``classify`` hook: this answer is final as it is, whatever its status."""


class HttpClient:
    """An httpx client with a cap on requests in flight and the retry rule above.

    The cap is ``limiter`` (:mod:`passback.connectors.limits`): by default this process's
    own ``concurrency``; a shared one keeps a destination's caps across every worker.
    ``classify`` lets a connector name its own retryable answers (Canvas throttles with
    a 403 whose body says so); ``before_request`` lets it pace itself (Canvas's bucket).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        name: str = "http",
        concurrency: int = 8,
        limiter: Limiter | None = None,
        policy: RetryPolicy | None = None,
        classify: Callable[[httpx.Response], RetryableError | object | None] | None = None,
        before_request: Callable[[], Awaitable[None]] | None = None,
        after_response: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.limiter: Limiter = limiter or LocalLimiter(concurrency)
        self.policy = policy or RetryPolicy()
        self.classify = classify
        self.before_request = before_request
        self.after_response = after_response
        self.stats = ClientStats()

    async def request(self, method: str, url: str, *, idempotent: bool | None = None,
                      **kwargs: Any) -> httpx.Response:
        """Send with retries; ``idempotent`` marks a POST that only reads (safe to repeat)."""
        idempotent = method.upper() in IDEMPOTENT if idempotent is None else idempotent
        first = True
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.policy.attempts),
                wait=_WaitWithRetryAfter(self.policy),
                retry=retry_if_exception_type(RetryableError),
                reraise=True,
            ):
                with attempt:
                    if not first:
                        self.stats.retries += 1
                    first = False
                    return await self._once(method, url, idempotent, **kwargs)
        except RetryableError as exc:
            raise GaveUp(f"{method} {url}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, url: str, idempotent: bool, **kwargs: Any) -> httpx.Response:
        if self.before_request is not None:
            await self.before_request()
        try:
            async with self.limiter.slot():
                self.stats.requests += 1
                meter = request_meter.get()
                if meter is not None:
                    meter[self.name] += 1
                try:
                    response = await self.client.request(method, url, **kwargs)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    raise RetryableError(f"cannot connect: {exc.__class__.__name__}") from exc
                except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    if idempotent:
                        raise RetryableError(f"no answer: {exc.__class__.__name__}") from exc
                    raise UncertainWrite(f"{method} {url}: {exc.__class__.__name__}") from exc
        except LimiterUnavailable as exc:  # nothing was sent: retried like a refused connection
            raise RetryableError(str(exc)) from exc
        self.stats.by_status[response.status_code] += 1
        if self.after_response is not None:
            self.after_response(response)
        if self.classify is not None:
            verdict = self.classify(response)
            if verdict is PASS:
                return response
            if isinstance(verdict, RetryableError):
                raise verdict
        if response.status_code in RETRY_STATUSES:
            if response.status_code == 429 or response.status_code == 503 or idempotent:
                raise RetryableError(f"HTTP {response.status_code}", retry_after_seconds(response))
            raise UncertainWrite(f"{method} {url}: HTTP {response.status_code}")
        return response

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.limiter.aclose()


def default_timeout(seconds: float = 30.0) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def default_limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
