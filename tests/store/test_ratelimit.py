"""RateLimitPort: a token bucket shared by every store grants exactly its capacity at once."""

from __future__ import annotations

import asyncio

from solo_os.store.ports import RateLimitPort

SLOW = 1e-6  # tokens per second: nothing refills during the test


async def test_concurrent_takers_get_exactly_the_capacity(store: RateLimitPort, other: RateLimitPort) -> None:
    capacity = 7
    grants = await asyncio.gather(*(s.take_tokens("api", 1, SLOW, capacity) for s in [store, other] * 8))
    assert sum(g.granted for g in grants) == capacity
    refused = [g for g in grants if g.granted == 0]
    assert len(refused) == 16 - capacity and all(g.wait > 0 for g in refused)
    bucket = await other.rate_limit_state("api")
    assert bucket is not None and bucket.tokens < 1
    assert await store.rate_limit_state("other-key") is None


async def test_partial_grant_and_pause(store: RateLimitPort, other: RateLimitPort) -> None:
    assert (await store.take_tokens("k", 5, SLOW, 3)).granted == 3
    assert (await other.take_tokens("k2", 1, SLOW, 3)).granted == 1  # keys are separate
    until = await other.pause_key("k2", 60, 3)
    grant = await store.take_tokens("k2", 1, SLOW, 3)
    assert grant.granted == 0 and 59 < grant.wait <= 60
    state = await store.rate_limit_state("k2")
    assert state is not None and state.paused_until == until
