"""The flow claim under concurrent claimers (SPEC section 7), on SQLite and PostgreSQL: four
stores (four connection pools: four workers, as far as the database knows) claim and finish
at the same time; a key's limit is never exceeded and each key's executions start in the
order they were received. On PostgreSQL this is the one-statement claim (``_pg_flow``) under
the flow claim's advisory lock."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from solo_os import store as store_mod
from solo_os.core import flow
from solo_os.testing import Clock
from tests.store._support import finished
from tests.store.test_flow import LEASE, ev, use

KEYS, PER_KEY, CLAIMERS = 6, 12, 4


async def test_concurrent_claimers_keep_one_per_key_and_fifo(database_url: str, clock: Clock) -> None:
    c = flow.Concurrency(1, key="k")
    stores = [store_mod.connect(database_url) for _ in range(CLAIMERS)]
    for s in stores:
        await s.start()
        use(s, concurrency=c)
    try:
        # Received one key after another, round-robin: key k0's i=0, k1's i=0, ... k0's i=1, ...
        await stores[0].ingest([
            ev(clock.advance(seconds=1), {"k": f"k{n % KEYS}", "i": n // KEYS}, concurrency=c)
            for n in range(KEYS * PER_KEY)
        ])
        running: dict[str, str] = {}  # key -> the execution id that holds its one slot
        started: dict[str, list[int]] = defaultdict(list)
        overlaps: list[str] = []
        rng = random.Random(16)

        async def claimer(n: int, s: store_mod.Store) -> None:
            idle = 0
            while sum(map(len, started.values())) < KEYS * PER_KEY and idle < 200:
                got = await s.claim(f"w{n}", 3, clock(), LEASE)
                idle = 0 if got else idle + 1
                for x in got:
                    key = x.document["k"]
                    if key in running:
                        overlaps.append(f"{key}: {running[key]} and {x.id}")
                    running[key] = str(x.id)
                    started[key].append(x.document["i"])
                await asyncio.sleep(rng.random() * 0.005)
                for x in got:  # the slot is given back here, before the finish commits
                    running.pop(x.document["k"], None)
                await s.finish(f"w{n}", [finished(x, clock(), "succeeded") for x in got])

        await asyncio.gather(*(claimer(n, s) for n, s in enumerate(stores)))
        assert overlaps == []
        assert dict(started) == {f"k{k}": list(range(PER_KEY)) for k in range(KEYS)}
    finally:
        for s in stores:
            await s.close()
