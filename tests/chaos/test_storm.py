"""A storm of 1,000 concurrent deliveries of one key over real HTTP: one event, and one
execution per handler.

``solo-os serve`` (a subprocess) gets the same signed delivery 1,000 times at once, each on
its own connection. Exactly one answer says ``accepted``, the other 999 say ``duplicate``, all
name the same event, and the store holds one event with one execution for each of the app's
two matching handlers. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from solo_os import store as store_mod
from solo_os.store import _schema
from tests import helpers
from tests.chaos import _support

APP = str(_support.APPS / "ledger.py")
STORM = 1_000


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_storm_of_one_key_makes_one_event_and_one_execution_per_handler(
    database_url: str, tmp_path: Path
) -> None:
    env = _support.env_for(database_url, CHAOS_LEDGER_DSN="unused: no worker runs")
    body, headers = helpers.delivery(helpers.invoice(), key="storm-1")
    with _support.processes(tmp_path) as procs:
        _, base = procs.serve(APP, env)
        limits = httpx.Limits(max_connections=STORM, max_keepalive_connections=STORM)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            gate = asyncio.Event()

            async def one() -> httpx.Response:
                await gate.wait()
                return await client.post(f"{base}/webhooks/billing", content=body, headers=headers)

            tasks = [asyncio.create_task(one()) for _ in range(STORM)]
            await asyncio.sleep(0)
            gate.set()
            answers = await asyncio.gather(*tasks)
        logs = procs.logs()

    assert Counter(r.status_code for r in answers) == {200: STORM}, logs
    outcomes = Counter(r.json()["status"] for r in answers)
    assert outcomes == {"accepted": 1, "duplicate": STORM - 1}
    assert len({r.json()["event_id"] for r in answers}) == 1
    store = store_mod.connect(database_url)
    try:
        async with store._read() as conn:
            events = (await conn.execute(sa.select(sa.func.count()).select_from(_schema.events))).scalar()
            handlers = (
                await conn.execute(sa.select(_schema.executions.c.handler))
            ).scalars().all()
    finally:
        await store.close()
    assert events == 1
    assert sorted(handlers) == ["audit", "charge_and_mail"]
