"""A process's gate in front of the shared bucket: batching, bounded waits, store failures.

The store is replaced by an in-memory bucket that runs the same pure ``ratelimit.take``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from solo_os import errors
from solo_os.core import ratelimit
from solo_os.outbound import http


class MemoryBuckets:
    def __init__(self, fail: bool = False) -> None:
        self.buckets: dict[str, ratelimit.Bucket] = {}
        self.calls: list[int] = []
        self.fail = fail

    async def take_tokens(self, key: str, want: int, rate: float, capacity: float) -> ratelimit.Grant:
        await asyncio.sleep(0.002)  # a store round trip
        if self.fail:
            raise errors.StoreUnavailable("store unavailable: ConnectionRefusedError")
        self.calls.append(want)
        now = datetime.now(UTC)
        bucket = self.buckets.get(key) or ratelimit.fresh(capacity, now)
        self.buckets[key], grant = ratelimit.take(bucket, now, rate, capacity, want)
        return grant

    async def pause_key(self, key: str, seconds: float, capacity: float) -> datetime:
        now = datetime.now(UTC)
        bucket = self.buckets.get(key) or ratelimit.fresh(capacity, now)
        self.buckets[key] = ratelimit.pause(bucket, now, seconds)
        return self.buckets[key].paused_until or now


def deadline(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_concurrent_callers_share_store_round_trips_and_keep_the_rate() -> None:
    limit = ratelimit.Limit("api.example.com", 100, burst=10)
    store = MemoryBuckets()
    client = http.Client(limits={limit.key: limit}, buckets=store)
    t0 = time.monotonic()
    stamps: list[float] = []

    async def call() -> None:
        await client.acquire(limit, deadline(10))
        stamps.append(time.monotonic() - t0)

    await asyncio.gather(*(call() for _ in range(60)))
    elapsed = time.monotonic() - t0
    assert len(stamps) == 60
    # 10 at once, then 50 more at 100/s: about half a second, never faster
    assert elapsed >= (60 - 10) / 100 - 0.02
    assert sum(store.calls) >= 60
    assert len(store.calls) < 60, "the gate should ask the store for several callers at once"
    assert store.calls[0] == 60  # the first round trip asks for everyone waiting
    for start in stamps:
        in_window = [s for s in stamps if start <= s < start + 0.1]
        assert len(in_window) <= 10 + 100 * 0.1 + 1


async def test_a_caller_that_cannot_get_a_token_in_time_is_failed_at_once() -> None:
    limit = ratelimit.Limit("slow.example.com", 1, burst=1)  # one per second
    store = MemoryBuckets()
    client = http.Client(limits={limit.key: limit}, buckets=store)
    await client.acquire(limit, deadline(5))  # the only token
    t0 = time.monotonic()
    with pytest.raises(errors.RateLimited) as caught:
        await client.acquire(limit, deadline(0.2))
    assert time.monotonic() - t0 < 0.15, "it should not sit out its whole wait to learn that"
    assert caught.value.key == "slow.example.com"
    assert 0.8 <= caught.value.seconds <= 1.0
    assert isinstance(caught.value, errors.RetryAfter)  # older code still defers it


async def test_a_waiter_arriving_while_the_gate_sleeps_is_judged_at_once() -> None:
    limit = ratelimit.Limit("k", 1, burst=1)
    store = MemoryBuckets()
    client = http.Client(limits={limit.key: limit}, buckets=store)
    await client.acquire(limit, deadline(5))
    patient = asyncio.create_task(client.acquire(limit, deadline(5)))  # sleeps ~1 s for a token
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    with pytest.raises(errors.RateLimited):
        await client.acquire(limit, deadline(0))
    assert time.monotonic() - t0 < 0.1
    await patient  # and the patient one still gets its token
    await client.aclose()


async def test_a_paused_key_waits_for_the_end_of_the_pause() -> None:
    limit = ratelimit.Limit("k", 100, burst=5)
    store = MemoryBuckets()
    client = http.Client(limits={limit.key: limit}, buckets=store)
    await client.pause(limit, 0.3)
    t0 = time.monotonic()
    await client.acquire(limit, deadline(2))
    assert time.monotonic() - t0 >= 0.29
    await client.pause(limit, 5)
    with pytest.raises(errors.RateLimited) as caught:
        await client.acquire(limit, deadline(1))
    assert caught.value.seconds > 4


async def test_cancelled_waiters_do_not_stall_the_others() -> None:
    limit = ratelimit.Limit("k", 20, burst=1)
    store = MemoryBuckets()
    client = http.Client(limits={limit.key: limit}, buckets=store)
    await client.acquire(limit, deadline(5))
    doomed = [asyncio.create_task(client.acquire(limit, deadline(5))) for _ in range(5)]
    survivor = asyncio.create_task(client.acquire(limit, deadline(5)))
    await asyncio.sleep(0.01)
    for task in doomed:
        task.cancel()
    await asyncio.wait_for(survivor, 1.0)


async def test_a_store_failure_reaches_every_waiter_as_a_store_error() -> None:
    limit = ratelimit.Limit("k", 10)
    client = http.Client(limits={limit.key: limit}, buckets=MemoryBuckets(fail=True))
    results = await asyncio.gather(
        *(client.acquire(limit, deadline(1)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, errors.StoreUnavailable) for r in results)
    assert len({id(r) for r in results}) == 3  # one exception object each


def test_limits_without_a_store_are_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="need a store"):
        http.Client(limits={"k": ratelimit.Limit("k", 1)})
