"""A worker's slot is free once its handler returns, not once its outcome is written (issue 21):
the next claim overlaps the outcome's write. ``concurrency`` still bounds the handlers running
at once; outcomes being written hold up to as many again; and their leases are still renewed.

The queue double's ``finish`` blocks until the test lets it go, so an outcome's write is as slow
as the test wants, and every count below is read while it is held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from solo_os.core import records
from solo_os.runtime import worker as worker_mod
from tests.unit._queue_double import QuietQueue, due_jobs, job_app, until

CONCURRENCY = 2


class HeldQueue(QuietQueue):
    """Twenty due executions; ``finish`` waits for ``let_go`` to be set."""

    def __init__(self) -> None:
        self.finished: list[records.Finished] = []
        self.let_go = asyncio.Event()
        super().__init__(due_jobs(20))

    async def finish(self, worker_id: str, results: Sequence[records.Finished]) -> list[records.Finished]:
        await self.let_go.wait()
        self.finished += results
        return list(results)


async def test_claims_overlap_outcome_writes_within_twice_the_concurrency() -> None:
    queue = HeldQueue()
    running, most = [0], [0]
    w = worker_mod.Worker(
        job_app("overlap", 0.01, running, most),
        cast(Any, queue),
        concurrency=CONCURRENCY,
        poll_interval=0.01,
        lease_seconds=1.5,  # heartbeat every 0.5 s
    )
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        # No outcome is written yet, but the first handlers have returned: their slots took
        # more work, up to twice the concurrency in all, and no further.
        await until(lambda: len(queue.claimed) == 2 * CONCURRENCY and running[0] == 0, 5.0)
        await asyncio.sleep(0.2)
        assert len(queue.claimed) == 2 * CONCURRENCY
        assert queue.finished == []
        # What waits for its outcome's write keeps its lease.
        await until(lambda: set(queue.claimed) <= queue.renewed, 5.0)
        queue.let_go.set()
        await until(lambda: len(queue.finished) == 20, 5.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert most[0] == CONCURRENCY  # never more handlers at once than the concurrency
    assert sorted(f.execution_id.int for f in queue.finished) == list(range(1, 21))
    assert all(f.next_status == "succeeded" for f in queue.finished)
