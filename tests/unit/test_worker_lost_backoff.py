"""A lost execution that cannot be claimed (its flow-control key is full: another worker runs
that key) must not stall the worker nor make it ask again and again. The worker looks for lost
executions at most once per ``min(5 s, lease)``: it drains what runs, tries the lost one alone,
finds it cannot have it, and goes back to plain work until the next look.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, cast

from solo_os import App, Context, config, sources
from solo_os.core import records
from solo_os.runtime import worker as worker_mod
from tests.unit._queue_double import QuietQueue, due_jobs

LEASE = 0.25  # the worker looks for lost executions every min(5 s, lease)
DUE = 60


class KeyFullQueue(QuietQueue):
    """Plain work is due; a lost execution is always due too, but never leased (its key is full)."""

    def __init__(self) -> None:
        self.lost_looks = 0
        self.finished: list[records.Finished] = []
        super().__init__(due_jobs(DUE))

    async def lost_due(self, now: datetime) -> bool:
        self.lost_looks += 1
        return True

    async def finish(self, worker_id: str, results: Any) -> list[records.Finished]:
        self.finished += results
        return list(results)


def _app() -> App:
    app = App(service="lost-backoff", settings=config.Settings(DATABASE_URL="sqlite:///unused.db"))  # type: ignore[call-arg]
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job", name="job")
    async def job(event: dict[str, Any], ctx: Context) -> None:
        await asyncio.sleep(0.02)

    return app


async def test_a_lost_execution_whose_key_is_full_is_looked_for_once_per_interval() -> None:
    queue = KeyFullQueue()
    w = worker_mod.Worker(_app(), cast(Any, queue), concurrency=2, poll_interval=0.01, lease_seconds=LEASE)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(w.run(stop))
    try:
        deadline = started + 10
        while len(queue.finished) < DUE:
            assert time.monotonic() < deadline, f"{len(queue.finished)} of {DUE} ran: the worker stalled"
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        # Keep going a little with nothing plain left: an idle worker backs off the same way.
        await asyncio.sleep(4 * LEASE)
        elapsed_all = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sorted(f.execution_id.int for f in queue.finished) == list(range(1, DUE + 1))
    assert all(f.next_status == "succeeded" for f in queue.finished)
    # It did look (the lost one is not forgotten), and it tried to take it alone...
    assert queue.lost_claims >= 2, queue.lost_claims
    # ...but no more than once per interval (plus the first look), busy or idle.
    most = int(elapsed_all / LEASE) + 2
    assert queue.lost_claims <= most, (queue.lost_claims, most, elapsed)
    assert queue.lost_looks <= 2 * most, (queue.lost_looks, most)
