"""ThrottlePort: the admin sign-in limiter counts failures across every store of a database."""

from __future__ import annotations

import asyncio

from solo_os.store.ports import ThrottlePort
from solo_os.testing import Clock

WINDOW = 60.0


async def test_failures_are_shared_and_counted_under_concurrency(
    store: ThrottlePort, other: ThrottlePort, clock: Clock
) -> None:
    now = clock()
    counts = await asyncio.gather(*(s.signin_failed("10.0.0.1", now, WINDOW) for s in [store, other] * 5))
    assert sorted(counts) == list(range(1, 11))  # every failure counted once
    assert await other.signin_failures("10.0.0.1", now, WINDOW) == 10
    assert await store.signin_failures("10.0.0.2", now, WINDOW) == 0


async def test_window_expiry_and_success_reset(
    store: ThrottlePort, other: ThrottlePort, clock: Clock
) -> None:
    await store.signin_failed("c", clock(), WINDOW)
    assert await other.signin_failed("c", clock.advance(WINDOW - 1), WINDOW) == 2
    assert await other.signin_failures("c", clock.advance(0.5), WINDOW) == 2
    later = clock.advance(0.5)  # the window runs from the first failure: it is over now
    assert await store.signin_failures("c", later, WINDOW) == 0
    assert await store.signin_failed("c", later, WINDOW) == 1  # a new window starts at one
    await other.signin_succeeded("c")
    assert await store.signin_failures("c", later, WINDOW) == 0
