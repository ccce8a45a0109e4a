"""Caps on the requests one remote system gets: how many in flight, how many a second.

Why shared: passback runs as several worker processes, and an API's limits are the
API's, not one process's. Eight in flight per process becomes 8 × workers against the
same server, so adding workers would break the limit it was meant to keep. The Redis
limiter keeps the count for one destination (a connection's kind and base URL) in one
place every process asks.

The rules, all in atomic Lua scripts on Redis's own clock (so hosts' clocks never
matter):

* A slot is a member of a sorted set scored by the end of its lease. A process that
  dies (SIGKILL, a lost host) cannot give its slots back, so a slot lasts only a lease
  (a few seconds), renewed while its request runs longer; expired slots are dropped
  before every count.
* The rate is a GCRA token bucket: one "theoretical arrival time" per destination; a
  request may start when it is no more than ``burst - 1`` intervals ahead of now. In any
  window of ``t`` seconds at most ``burst + t × rate`` requests start.
* A request takes a slot and a rate token together or neither, so one refusal never
  uses up the other.

Waiting does not poll Redis hard: a full destination is waited for with BLPOP on a
list that every release pushes to (a few milliseconds from a release to the next
start), bounded by a pause that doubles, so expired slots are noticed too; a rate wait
sleeps as long as the script says, plus jitter. A per-process semaphore stands in
front, so a process never asks Redis for more slots than its own connections can use.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import structlog

log = structlog.get_logger("passback.limits")

ACQUIRE = """
-- KEYS: slots (token -> lease end, microseconds), rate (theoretical arrival time, microseconds)
-- ARGV: token, slots allowed, lease (us), interval between requests (us, 0: no rate), burst tolerance (us)
-- Returns {1, now in us} when granted; {0, -1} when every slot is taken; {0, us} when the rate allows a start in us.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return {0, -1}
end
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat < now then tat = now end
  local allowed_at = tat - tonumber(ARGV[5])
  if now < allowed_at then
    return {0, string.format('%.0f', math.ceil(allowed_at - now))}
  end
  tat = tat + interval
  redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
return {1, string.format('%.0f', now)}
"""

RENEW = """
-- KEYS: slots; ARGV: token, lease (us). 1 when renewed, 0 when the slot is gone.
-- A slot past its lease but still present is renewed: every acquire drops expired slots
-- before counting, so while it is there no one has taken its place.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
return 1
"""

RELEASE = """
-- KEYS: slots, wake-up list; ARGV: token, slots allowed, list lifetime (ms).
-- 1 when the token held a slot (and one waiter is woken), 0 when it did not (expired, or released twice).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    """Redis's errors, imported only where Redis is used (a process without shared limits never loads it)."""
    from redis.exceptions import RedisError

    return RedisError, OSError


class LimiterUnavailable(Exception):
    """The shared limits could not be asked (Redis down): no request is sent unchecked."""


class Limiter(Protocol):
    """What :class:`~passback.connectors.http.HttpClient` holds around each request attempt."""

    def slot(self) -> AbstractAsyncContextManager[None]: ...

    async def aclose(self) -> None: ...


class LimiterFactory(Protocol):
    """Builds one limiter per client, for a destination shared by every process."""

    def limiter(self, destination: str, local_concurrency: int) -> Limiter: ...


class LocalLimiter:
    """One process's cap, as it always was: a semaphore of ``concurrency``, no rate."""

    def __init__(self, concurrency: int) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)

    def slot(self) -> AbstractAsyncContextManager[None]:
        return self.semaphore  # type: ignore[return-value]  # its __aenter__ returns None

    async def aclose(self) -> None:
        return None


def destination_key(kind: str, url: str) -> str:
    """The destination a limit is kept for: the connection kind and its base URL, with the
    scheme and host lowercased and no trailing slash, so one API is one key however it is typed."""
    parts = urlsplit(url.strip())
    if parts.scheme and parts.netloc:
        url = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))
    return f"{kind}|{url.rstrip('/')}"


class RedisLimiter:
    """At most ``concurrency`` requests in flight to ``destination`` across every process, and
    (with ``rate``) at most ``rate`` starts a second, kept in Redis.

    ``redis`` is a URL (a client is opened per event loop and closed by :meth:`aclose`) or a
    client the caller owns. ``local_concurrency`` caps this process's requests before Redis
    is asked. ``lease`` is how long a dead process's slot outlives it.
    """

    def __init__(self, redis: str | Any, destination: str, *, concurrency: int, rate: float | None = None,
                 burst: int = 1, local_concurrency: int | None = None, lease: float = 5.0,
                 prefix: str = "passback:limits", max_pause: float = 0.2) -> None:
        if concurrency < 1:
            raise ValueError("A shared limit needs at least one request in flight")
        if rate is not None and rate <= 0:
            raise ValueError("A request rate must be above 0 (or None for no rate)")
        if burst < 1:
            raise ValueError("A burst must be at least 1")
        self.destination = destination
        self.concurrency = concurrency
        self.rate = rate
        self.burst = burst
        self.lease = lease
        self.max_pause = max_pause
        base = f"{prefix}:{{{destination}}}"  # one hash tag: the keys live together on a cluster too
        self.slots_key, self.rate_key, self.wake_key = f"{base}:slots", f"{base}:rate", f"{base}:wake"
        self._interval_us = 0 if rate is None else round(1_000_000 / rate)
        self._tolerance_us = (burst - 1) * self._interval_us
        self._lease_us = round(lease * 1_000_000)
        self._local = asyncio.Semaphore(local_concurrency or concurrency)
        self._url = redis if isinstance(redis, str) else None
        self._client: Any = None if isinstance(redis, str) else redis
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self._tokens = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._issued = 0
        #: When set to a list, the Redis time (seconds) of every grant is appended: the moment the
        #: limit let a request start, on the one clock every process shares, free of the delay
        #: between a grant and the request reaching the server (for audits of the limit).
        self.grants: list[float] | None = None

    def _redis(self) -> Any:
        """The client for the running loop: redis.asyncio's connections belong to the loop that
        opened them, and a worker may run each task in a new loop."""
        loop = asyncio.get_running_loop()
        if self._url is not None and (self._client is None or self._loop is not loop):
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(self._url, socket_connect_timeout=5, socket_timeout=10)
            self._loop = loop
            self._scripts = {}
        if not self._scripts:
            self._scripts = {name: self._client.register_script(text)
                             for name, text in (("acquire", ACQUIRE), ("renew", RENEW), ("release", RELEASE))}
        return self._client

    def new_token(self) -> str:
        """A slot's name: host, process and a count, so a person reading the set sees who holds it."""
        self._issued += 1
        return f"{self._tokens}:{self._issued}"

    async def try_acquire(self, token: str) -> float | None:
        """One attempt: ``None`` when granted, else seconds to wait (``-1.0``: every slot is taken)."""
        self._redis()
        granted, wait_us = await self._scripts["acquire"](
            keys=[self.slots_key, self.rate_key],
            args=[token, self.concurrency, self._lease_us, self._interval_us, self._tolerance_us])
        if int(granted):
            if self.grants is not None:
                self.grants.append(int(wait_us) / 1_000_000)
            return None
        wait = int(wait_us)
        return -1.0 if wait < 0 else wait / 1_000_000

    async def renew(self, token: str) -> bool:
        """Extend the slot's lease; False when it is gone (this process stalled past its lease)."""
        self._redis()
        return bool(await self._scripts["renew"](keys=[self.slots_key], args=[token, self._lease_us]))

    async def release(self, token: str) -> bool:
        """Give the slot back and wake one waiter; False when it was not held any more."""
        self._redis()
        return bool(await self._scripts["release"](
            keys=[self.slots_key, self.wake_key], args=[token, self.concurrency, round(self.lease * 2000)]))

    async def acquire(self) -> str:
        """A slot's token, once a slot is free and the rate allows a start."""
        token = self.new_token()
        pause = 0.01  # at least a few ms: Redis reads a BLPOP timeout that rounds to 0 as "forever"
        try:
            while True:
                wait = await self.try_acquire(token)
                if wait is None:
                    return token
                if wait >= 0:  # the rate: the script knows when; jitter keeps waiters from waking together
                    await asyncio.sleep(wait + random.uniform(0, self._interval_us / 1_000_000))
                    continue
                # Every slot taken: a release wakes one waiter; the pause bounds the wait for expired ones.
                await self._redis().blpop([self.wake_key], timeout=pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, self.max_pause)
        except asyncio.CancelledError:  # perhaps granted just before: give it back now, not a lease later
            await asyncio.shield(self._give_back(token))
            raise
        except _redis_errors() as exc:
            raise LimiterUnavailable(f"the shared limits in Redis cannot be asked ({exc.__class__.__name__}: {exc})") \
                from exc

    async def _keep(self, token: str) -> None:
        """Renew the lease every third of it while the request runs."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await self.renew(token):
                    log.warning("limit_slot_lost", destination=self.destination, lease=self.lease)
                    return
            except Exception as exc:  # noqa: BLE001 - Redis away for a moment: try again; the lease says how long
                log.warning("limit_renew_failed", destination=self.destination, error=exc.__class__.__name__)

    async def _give_back(self, token: str) -> None:
        try:
            await self.release(token)
        except Exception as exc:  # noqa: BLE001 - the lease frees the slot anyway
            log.warning("limit_release_failed", destination=self.destination, error=exc.__class__.__name__)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._local:
            token = await self.acquire()
            keeper = asyncio.create_task(self._keep(token))
            try:
                yield
            finally:
                keeper.cancel()
                await asyncio.shield(self._give_back(token))  # given back even when the request is cancelled

    async def aclose(self) -> None:
        if self._url is not None and self._client is not None:
            client, self._client, self._scripts = self._client, None, {}
            if self._loop is asyncio.get_running_loop():
                await client.aclose()


@dataclass(frozen=True)
class SharedLimits:
    """Limits per destination shared by every process through Redis: one :class:`RedisLimiter` per client."""

    redis_url: str
    concurrency: int
    rate: float | None = None
    burst: int = 1
    lease: float = 5.0
    prefix: str = "passback:limits"

    def limiter(self, destination: str, local_concurrency: int) -> RedisLimiter:
        return RedisLimiter(self.redis_url, destination, concurrency=self.concurrency, rate=self.rate,
                            burst=self.burst, local_concurrency=local_concurrency, lease=self.lease,
                            prefix=self.prefix)
