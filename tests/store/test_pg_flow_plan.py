"""The PostgreSQL flow claim (``_pg_flow``) is planned once per connection, not at every claim:
its transaction sets ``plan_cache_mode = force_generic_plan`` (PostgreSQL keeps choosing a
custom plan for it otherwise, ~0.4 ms of planning per claim on the drain's hot path); and the
plan mode does not outlive the claim's transaction."""

from __future__ import annotations

import asyncpg
import pytest

from solo_os import store as store_mod
from solo_os.core import flow
from solo_os.store import _flow, _pg_flow
from solo_os.store.postgres import _lock_id
from solo_os.testing import Clock
from tests.store.test_flow import LEASE, ev

pytestmark = pytest.mark.postgres
CLAIMS = 8  # PostgreSQL decides between custom and generic plans after the fifth execution


async def test_the_flow_claim_reuses_one_generic_plan(pg_url: str, clock: Clock) -> None:
    c = flow.Concurrency(1, key="k")
    s = store_mod.connect(pg_url)
    await s.start()
    try:
        await s.ingest([ev(clock.advance(seconds=1), {"k": f"k{n}"}, concurrency=c) for n in range(CLAIMS)])
    finally:
        await s.close()

    class H:
        name = "h"
        flow = flow.Options(concurrency=c)

    plan = flow.plan([H()])
    assert plan is not None
    conn = await asyncpg.connect(pg_url)
    try:
        got = [
            await _pg_flow.claim(conn, _lock_id(_flow.CLAIM_LOCK), plan, "w", 1, clock(), LEASE)
            for _ in range(CLAIMS)
        ]
        assert [len(g) for g in got] == [1] * CLAIMS  # one key each: every claim leased one
        generic, custom = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '-- The flow claim%'"
        )
        assert (generic, custom) == (CLAIMS, 0)
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"  # SET LOCAL: gone at COMMIT
    finally:
        await conn.close()
