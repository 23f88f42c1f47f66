"""RateLimitPort: token buckets shared by every process grant exactly what they hold.

The buckets run on the database's clock (``now()`` in the locking transaction), so refill is
the one place here where the test waits real time (a quarter of a second).
"""

from __future__ import annotations

import asyncio

from solo_os import store as store_mod
from solo_os.store.ports import RateLimitPort


async def test_buckets_are_atomic_across_connections(database_url: str) -> None:
    """200 demands from 4 stores (separate pools, as separate processes have) at once: the
    bucket of 50 (refilling 1 an hour) grants exactly 50."""
    stores: list[store_mod.Store] = [store_mod.connect(database_url) for _ in range(4)]
    ports: list[RateLimitPort] = list(stores)
    try:
        grants = await asyncio.gather(*(ports[i % 4].take_tokens("k", 1, 1 / 3600, 50) for i in range(200)))
        assert sum(g.granted for g in grants) == 50
        assert all(g.wait > 0 for g in grants if g.granted == 0)
        state = await ports[0].rate_limit_state("k")
        assert state is not None and state.tokens < 1
        assert await ports[1].rate_limit_state("other-key") is None
    finally:
        for s in stores:
            await s.close()


async def test_bucket_refills_pauses_and_keys_are_separate(store: RateLimitPort) -> None:
    assert await store.rate_limit_state("a") is None
    g = await store.take_tokens("a", 3, 10.0, 2.0)
    assert (g.granted, round(g.wait, 2)) == (2, 0.1)  # a partial grant, and when the next is due
    await asyncio.sleep(0.25)
    assert (await store.take_tokens("a", 5, 10.0, 2.0)).granted == 2  # refilled to capacity
    assert (await store.take_tokens("b", 1, 10.0, 2.0)).granted == 1  # another key
    until = await store.pause_key("a", 30, 2.0)
    later = await store.pause_key("a", 1, 2.0)
    assert later == until  # a shorter pause does not shorten it
    g = await store.take_tokens("a", 1, 10.0, 2.0)
    assert g.granted == 0 and 29 < g.wait <= 30
    state = await store.rate_limit_state("a")
    assert state is not None and state.paused_until == until
