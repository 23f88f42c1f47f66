"""A worker holding back its claims (fewer free slots than a quarter) is woken by a freed slot.

New work's NOTIFY (or in-process wake-up) may arrive while the worker has too few free slots to
claim: that wake-up is spent, and no other comes when the running handlers finish. The worker
must then wake on the freed slots, not sleep the poll interval (30 s here) with due work
waiting. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from solo_os import App, Context, sources
from solo_os.store import ports
from tests import helpers

CONCURRENCY = 8  # held back with 7 running: 1 free slot < a quarter (2)


async def test_due_work_starts_when_slots_free_not_at_the_next_poll(database_url: str) -> None:
    gate = asyncio.Event()
    running: set[str] = set()
    started: dict[str, float] = {}
    app = App(service="wakeup-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "slow")
    async def slow(event: Any, ctx: Context) -> None:
        running.add(event["key"])
        await gate.wait()

    @app.on("billing", "quick")
    async def quick(event: Any, ctx: Context) -> None:
        started[event["key"]] = time.monotonic()

    async with helpers.running(app, database_url, concurrency=CONCURRENCY, poll_interval=30.0) as h:
        async def looping() -> bool:
            return h.runtime.worker is not None and h.runtime.worker.looping

        await helpers.eventually(looping, timeout=10)  # registered for hand-offs by now
        if isinstance(h.store, ports.HandOffPort):
            # The threshold is the claim's: SQLite's hand-off (an ingest of this process leasing
            # to its worker, store/_sqlite_claim.py) costs no transaction and fills any free slot.
            h.store.hand_off_to(None)
        for i in range(CONCURRENCY - 1):
            r = await h.post("billing", {"key": f"s{i}"}, event_type="slow", key=f"s{i}")
            assert r.status_code == 200, r.text

        async def all_running() -> bool:
            return len(running) == CONCURRENCY - 1

        await helpers.eventually(all_running, timeout=10)
        r = await h.post("billing", {"key": "q"}, event_type="quick", key="q")
        assert r.status_code == 200, r.text
        await asyncio.sleep(0.5)  # its wake-up came while the worker held back
        assert "q" not in started, "claimed with 1 free slot of 8: the threshold changed"
        released = time.monotonic()
        gate.set()

        async def quick_ran() -> bool:
            return "q" in started

        await helpers.eventually(quick_ran, timeout=20)
        waited = started["q"] - released
    assert waited < 5.0, f"the due execution waited {waited:.1f} s after slots freed (the poll)"
