"""The limiter's rules, one edge at a time, on the real local Redis: slots and their leases,
the GCRA rate, what a refusal spends, wake-ups, cancellation, keys that clean themselves
up, an unreachable Redis, and how settings reach a connector's client.

The scripts run on Redis's own clock, so these tests use Redis, never a fake: a fake
would test the fake. Each test has keys of its own (``redis_prefix``), deleted after it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from passback.connectors.courseware.config import CoursewareConfig
from passback.connectors.http import GaveUp, HttpClient, RetryPolicy
from passback.connectors.limits import LocalLimiter, RedisLimiter, SharedLimits, destination_key
from passback.connectors.registry import SOURCE, HttpOptions, open_connector
from passback.services.connections import http_options, shared_limits
from passback.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.anyio
DESTINATION = "courseware|http://api.example"


def make(redis_url: str, prefix: str, **options: Any) -> RedisLimiter:
    return RedisLimiter(redis_url, DESTINATION, prefix=prefix, **{"concurrency": 1, **options})


def held(redis_url: str, limiter: RedisLimiter) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard(limiter.slots_key))
    finally:
        client.close()


async def test_slots_are_counted_and_given_back(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=2)
    a, b, c = limiter.new_token(), limiter.new_token(), limiter.new_token()
    assert await limiter.try_acquire(a) is None
    assert await limiter.try_acquire(b) is None
    assert await limiter.try_acquire(c) == -1.0  # every slot taken: no time to offer, a release decides
    assert held(redis_url, limiter) == 2
    assert await limiter.release(a) is True
    assert await limiter.try_acquire(c) is None
    await limiter.aclose()


async def test_a_release_twice_or_of_a_stranger_frees_nothing(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix)
    mine, other = limiter.new_token(), limiter.new_token()
    assert await limiter.try_acquire(mine) is None
    assert await limiter.release("never-held") is False
    assert await limiter.release(mine) is True
    assert await limiter.try_acquire(other) is None
    assert await limiter.release(mine) is False  # released already: the slot now is other's, and stays so
    assert held(redis_url, limiter) == 1
    assert await limiter.try_acquire(limiter.new_token()) == -1.0
    await limiter.aclose()


async def test_a_dead_holders_slot_is_taken_over_after_its_lease(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, lease=0.05)
    dead, alive = limiter.new_token(), limiter.new_token()
    assert await limiter.try_acquire(dead) is None
    assert await limiter.try_acquire(alive) == -1.0
    await asyncio.sleep(0.08)
    assert await limiter.try_acquire(alive) is None  # the expired slot was dropped before counting
    assert await limiter.renew(dead) is False  # its holder, if it wakes, learns it lost the slot...
    assert await limiter.release(dead) is False  # ...and giving it back does not free the new holder's
    assert await limiter.try_acquire(limiter.new_token()) == -1.0
    await limiter.aclose()


async def test_a_lapsed_slot_nobody_took_is_renewed_and_still_counts(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, lease=0.05)
    slow = limiter.new_token()
    assert await limiter.try_acquire(slow) is None
    await asyncio.sleep(0.08)  # past the lease, but no acquire ran since: nobody counted its place as free
    assert await limiter.renew(slow) is True
    assert await limiter.try_acquire(limiter.new_token()) == -1.0
    await limiter.aclose()


async def test_a_long_request_keeps_its_slot_by_renewal(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, lease=0.3)
    other = make(redis_url, redis_prefix, lease=0.3)
    async with limiter.slot():
        for _ in range(5):  # 1.25 s: four leases; without renewal the slot would be free after the first
            await asyncio.sleep(0.25)
            assert await other.try_acquire(other.new_token()) == -1.0
    assert held(redis_url, limiter) == 0
    assert await other.try_acquire(other.new_token()) is None
    await limiter.aclose()
    await other.aclose()


async def test_the_rate_spaces_starts_by_its_interval(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=100, rate=10)
    assert await limiter.try_acquire(limiter.new_token()) is None
    wait = await limiter.try_acquire(limiter.new_token())
    assert wait is not None and 0 < wait <= 0.1  # the next start is one interval (100 ms) after the first
    await asyncio.sleep(wait)
    assert await limiter.try_acquire(limiter.new_token()) is None
    await limiter.aclose()


async def test_a_burst_starts_at_once_then_the_rate_holds(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=100, rate=5, burst=3)
    for _ in range(3):
        assert await limiter.try_acquire(limiter.new_token()) is None
    wait = await limiter.try_acquire(limiter.new_token())
    assert wait is not None and 0.15 < wait <= 0.2
    await limiter.aclose()


async def test_a_refusal_for_slots_spends_no_rate(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=1, rate=2, burst=2)
    first = limiter.new_token()
    assert await limiter.try_acquire(first) is None  # one of the two tokens of the burst
    for _ in range(5):
        assert await limiter.try_acquire(limiter.new_token()) == -1.0
    await limiter.release(first)
    assert await limiter.try_acquire(limiter.new_token()) is None  # the second token was still there
    await limiter.aclose()


async def test_a_refusal_for_rate_takes_no_slot(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=1, rate=1)
    first = limiter.new_token()
    assert await limiter.try_acquire(first) is None
    await limiter.release(first)
    wait = await limiter.try_acquire(limiter.new_token())
    assert wait is not None and wait > 0.5
    assert held(redis_url, limiter) == 0
    await limiter.aclose()


async def test_nothing_stays_in_redis_once_idle(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=2, rate=100, lease=0.05)
    token = limiter.new_token()
    assert await limiter.try_acquire(token) is None
    client = redis.Redis.from_url(redis_url)
    try:
        keys = (limiter.slots_key, limiter.rate_key, limiter.wake_key)
        assert all(0 < client.pttl(key) <= 1100 for key in keys[:2]), [client.pttl(key) for key in keys]
        await asyncio.sleep(0.02)  # one interval of the rate
        assert await limiter.try_acquire(limiter.new_token()) is None  # a second slot, never given back: its holder died
        await limiter.release(token)
        assert 0 < client.pttl(limiter.wake_key) <= 100
        await asyncio.sleep(1.2)
        assert client.exists(*keys) == 0
    finally:
        client.close()
    await limiter.aclose()


async def test_two_processes_worth_of_tasks_never_pass_the_shared_count(redis_url: str, redis_prefix: str) -> None:
    limiters = [make(redis_url, redis_prefix, concurrency=3, local_concurrency=8) for _ in range(2)]
    now = peak = 0

    async def request(limiter: RedisLimiter) -> None:
        nonlocal now, peak
        async with limiter.slot():
            now += 1
            peak = max(peak, now)
            await asyncio.sleep(0.02)
            now -= 1

    await asyncio.gather(*(request(limiters[i % 2]) for i in range(40)))
    assert peak == 3
    assert held(redis_url, limiters[0]) == 0
    for limiter in limiters:
        await limiter.aclose()


async def test_the_local_semaphore_stands_before_redis(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix, concurrency=10, local_concurrency=2)
    most_held = 0

    async def request() -> None:
        nonlocal most_held
        async with limiter.slot():
            most_held = max(most_held, held(redis_url, limiter))
            await asyncio.sleep(0.02)

    await asyncio.gather(*(request() for _ in range(12)))
    assert most_held == 2  # ten were free in Redis; this process asked for no more than it could use
    await limiter.aclose()


async def test_a_release_wakes_a_waiter_without_its_pause(redis_url: str, redis_prefix: str) -> None:
    holder = make(redis_url, redis_prefix, max_pause=5.0)
    waiter = make(redis_url, redis_prefix, max_pause=5.0)
    token = holder.new_token()
    assert await holder.try_acquire(token) is None
    got: list[float] = []

    async def wait_for_it() -> None:
        async with waiter.slot():
            got.append(time.monotonic())

    task = asyncio.create_task(wait_for_it())
    await asyncio.sleep(1.5)  # the waiter's pause has doubled to more than half a second by now
    assert not got
    released = time.monotonic()
    await holder.release(token)
    await asyncio.wait_for(task, 5)
    assert got[0] - released < 0.1
    await holder.aclose()
    await waiter.aclose()


async def test_a_cancelled_request_gives_its_slot_back(redis_url: str, redis_prefix: str) -> None:
    limiter = make(redis_url, redis_prefix)
    entered = asyncio.Event()

    async def request() -> None:
        async with limiter.slot():
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(request())
    await entered.wait()
    assert held(redis_url, limiter) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # the release is shielded: it finishes on its own
    assert held(redis_url, limiter) == 0
    await limiter.aclose()


async def test_an_unreachable_redis_sends_nothing_and_gives_up_as_retryable() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", DESTINATION, concurrency=2)
    client = HttpClient(httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://api.example"),
                        limiter=limiter, policy=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02))
    with pytest.raises(GaveUp, match="shared limits in Redis"):
        await client.request("GET", "/courses")
    assert sent == []  # no request goes out unchecked
    await client.aclose()


def test_limits_are_checked_when_made(redis_url: str) -> None:
    with pytest.raises(ValueError, match="at least one"):
        RedisLimiter(redis_url, DESTINATION, concurrency=0)
    with pytest.raises(ValueError, match="above 0"):
        RedisLimiter(redis_url, DESTINATION, concurrency=1, rate=0)


def test_a_destination_is_its_kind_and_normalised_url() -> None:
    assert destination_key("oneroster", "HTTPS://SIS.District.org/ims/") == "oneroster|https://sis.district.org/ims"
    assert destination_key("canvas", "https://x.instructure.com") != destination_key("lti_ags", "https://x.instructure.com")


async def test_a_client_without_shared_limits_keeps_its_own_semaphore() -> None:
    client = HttpClient(httpx.AsyncClient(), concurrency=3)
    assert isinstance(client.limiter, LocalLimiter)
    await client.aclose()


def test_settings_reach_the_connectors_client(redis_url: str, tmp_path: Path) -> None:
    config = CoursewareConfig.parse("http://Courseware.example/", {"token": "t"})
    alone = http_options(Settings(data_dir=tmp_path, concurrency=5))
    assert alone.limits is None
    assert isinstance(open_connector(SOURCE, config, alone, "cw").client.http.limiter, LocalLimiter)

    assert shared_limits(Settings(data_dir=tmp_path, redis_url=redis_url, concurrency=5)) == SharedLimits(
        redis_url, concurrency=5)  # no count of its own: one process's cap, now for all workers together
    shared = http_options(Settings(data_dir=tmp_path, redis_url=redis_url, concurrency=5, destination_concurrency=2,
                                   destination_rate=3.5))
    limiter = open_connector(SOURCE, config, shared, "cw").client.http.limiter
    assert isinstance(limiter, RedisLimiter)
    assert (limiter.destination, limiter.concurrency, limiter.rate) == ("courseware|http://courseware.example", 2, 3.5)
    assert limiter._local._value == 5  # this process's own share: its concurrency
    assert HttpOptions(limits=shared.limits).limiter(config, 1)._local._value == 1  # type: ignore[union-attr]
