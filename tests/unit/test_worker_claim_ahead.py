"""A worker claims ahead what its handlers are expected to free while the claim is on its way
(issue 21): the next claim's round trip overlaps the handlers that run instead of following
them. Handlers that run longer than a claim takes are not claimed ahead (other workers get
them); ``concurrency`` still bounds the handlers running at once; what was claimed ahead keeps
its lease, and at shutdown it is given back, never started.

The queue double's ``claim`` takes ``claim_seconds`` (a slow database), and records how many
handlers ran when each claim went out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from solo_os import App
from solo_os.core import records
from solo_os.runtime import worker as worker_mod
from tests.unit._queue_double import QuietQueue, due_jobs, job_app, until

CONCURRENCY = 2


class SlowClaims(QuietQueue):
    def __init__(self, n: int, claim_seconds: float, running: list[int]) -> None:
        super().__init__(due_jobs(n))
        self.claim_seconds = claim_seconds
        self._running_now = running
        self.running_at_claim: list[int] = []
        self.finished: list[records.Finished] = []
        self.given_back: list[uuid.UUID] = []

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_seconds: float, *, lost: bool | None = None
    ) -> list[records.Claimed]:
        if not lost:
            await asyncio.sleep(0)  # handlers started just before this claim begin to run
            self.running_at_claim.append(self._running_now[0])
            await asyncio.sleep(self.claim_seconds)
        return await super().claim(worker_id, limit, now, lease_seconds, lost=lost)

    async def finish(self, worker_id: str, results: Sequence[records.Finished]) -> list[records.Finished]:
        self.finished += results
        return list(results)

    async def give_back(self, worker_id: str, ids: Iterable[uuid.UUID]) -> int:
        self.given_back += ids
        return len(self.given_back)


def _worker(app: App, queue: SlowClaims, lease_seconds: float = 30.0) -> worker_mod.Worker:
    return worker_mod.Worker(
        app, cast(Any, queue), concurrency=CONCURRENCY, poll_interval=0.01, lease_seconds=lease_seconds
    )


async def test_handlers_as_short_as_a_claim_are_claimed_ahead_while_every_slot_runs() -> None:
    running, most, started = [0], [0], []
    queue = SlowClaims(24, claim_seconds=0.05, running=running)
    stop = asyncio.Event()
    task = asyncio.create_task(_worker(job_app("ahead", 0.05, running, most, started), queue).run(stop))
    try:
        await until(lambda: len(queue.finished) == 24, 10.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # The old worker claimed only into free slots: never while all of them ran.
    assert CONCURRENCY in queue.running_at_claim, queue.running_at_claim
    assert most[0] == CONCURRENCY  # never more handlers at once than the concurrency
    assert sorted(started) == list(range(1, 25))  # each once
    assert sorted(f.execution_id.int for f in queue.finished) == list(range(1, 25))


async def test_handlers_longer_than_a_claim_are_not_claimed_ahead() -> None:
    running, most, started = [0], [0], []
    queue = SlowClaims(10, claim_seconds=0.0, running=running)
    stop = asyncio.Event()
    task = asyncio.create_task(_worker(job_app("ahead", 0.3, running, most, started), queue).run(stop))
    try:
        await until(lambda: len(queue.finished) >= 4, 10.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert CONCURRENCY not in queue.running_at_claim  # claimed into free slots only
    assert queue.given_back == []  # nothing waited unstarted


async def test_claimed_ahead_keeps_its_lease_and_is_given_back_at_shutdown() -> None:
    running, most, started = [0], [0], []
    queue = SlowClaims(100, claim_seconds=0.1, running=running)
    stop = asyncio.Event()
    # Leases of 0.3 s are renewed every 0.1 s.
    w = _worker(job_app("ahead", 0.2, running, most, started), queue, lease_seconds=0.3)
    task = asyncio.create_task(w.run(stop))
    try:
        # Claimed, not started: what the worker holds ahead of its running handlers.
        def ahead() -> set[uuid.UUID]:
            return set(queue.claimed) - {uuid.UUID(int=n) for n in started}

        await until(lambda: bool(ahead() & queue.renewed), 10.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    ran = {uuid.UUID(int=n) for n in started}
    assert queue.given_back  # some were claimed ahead when it stopped
    assert set(queue.given_back) == set(queue.claimed) - ran  # all of those, and only those
    assert {f.execution_id for f in queue.finished} == ran  # what started ran to its end
