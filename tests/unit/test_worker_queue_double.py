"""The worker role against a test double of its ``QueuePort``: no database, a test clock.

``MemoryQueue`` is the example of a port double: one small class implementing ``QueuePort``
in memory (its quiet half, shared with the other worker doubles, is ``_queue_double``). The
worker's retry delays are read from the ``run_after`` it hands to ``finish``, with the retry
jitter pinned at its extreme, so a missing ``max_delay`` cap fails the test.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from solo_os import App, Context, Retry, config, sources
from solo_os.core import records
from solo_os.runtime import worker as worker_mod
from solo_os.store.ports import QueuePort
from solo_os.testing import Clock
from tests.unit._queue_double import QuietQueue


class MemoryQueue(QuietQueue):
    """A ``QueuePort`` in memory: one execution, re-queued at ``run_after`` while it retries."""

    def __init__(self, handler: str, max_attempts: int) -> None:
        self.handler, self.max_attempts = handler, max_attempts
        self.due: list[tuple[datetime, records.Claimed]] = []
        self.finished: list[records.Finished] = []
        self.changed = asyncio.Event()
        super().__init__()
        self.put(handler, 1, max_attempts, datetime.min.replace(tzinfo=UTC))

    def put(self, handler: str, attempt: int, max_attempts: int, run_after: datetime) -> None:
        claimed = records.Claimed(
            id=uuid.UUID(int=1),
            event_id=uuid.UUID(int=2),
            handler=handler,
            attempt=attempt,
            max_attempts=max_attempts,
            correlation_id="c",
            source="billing",
            event_type="job",
            idempotency_key="k",
            received_at=run_after,
            headers={},
            document={"n": 1},
        )
        self.due.append((run_after, claimed))

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_seconds: float, *, lost: bool | None = None
    ) -> list[records.Claimed]:
        if lost:
            return []
        ready = [c for at, c in self.due if at <= now][:limit]
        self.due = [(at, c) for at, c in self.due if c not in ready]
        return ready

    async def finish(self, worker_id: str, results: Sequence[records.Finished]) -> list[records.Finished]:
        for r in results:
            self.finished.append(r)
            if r.next_status == "pending" and r.run_after is not None:
                self.put(self.handler, r.attempt + 1, self.max_attempts, r.run_after)
        self.changed.set()
        return list(results)


class Highest(random.Random):
    """Every draw at the top of its range: full jitter at its largest delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _app(policy: Retry) -> App:
    app = App(service="queue-double", settings=config.Settings(DATABASE_URL="sqlite:///unused.db"))  # type: ignore[call-arg]
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job", retry=policy, name="job")
    async def job(event: dict[str, Any], ctx: Context) -> None:
        raise ConnectionError(f"down at attempt {ctx.attempt}")

    return app


async def test_memory_queue_is_a_queue_port() -> None:
    assert isinstance(MemoryQueue("job", 1), QueuePort)


async def test_jittered_retry_delays_are_capped_exactly_at_max_delay() -> None:
    clock = Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    queue = MemoryQueue("job", 4)
    port: QueuePort = queue
    policy = Retry(max_attempts=4, base_delay=0.2, max_delay=0.5, jitter=True)
    # The worker also takes steps and logs from its store; this handler uses neither.
    w = worker_mod.Worker(_app(policy), cast(Any, port), clock=clock, poll_interval=0.01)
    w._rng = Highest()
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        for n in range(1, 5):
            while len(queue.finished) < n:
                await asyncio.wait_for(queue.changed.wait(), 10)
                queue.changed.clear()
            last = queue.finished[-1]
            if last.run_after is not None:
                clock.set(last.run_after)  # jump over the backoff; no sleeping
                queue.wake_local()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    delays = [(f.run_after - f.ended_at).total_seconds() for f in queue.finished if f.run_after is not None]
    # ceilings 0.2, 0.4, then min(0.8, 0.5): the draw at the top of the range is the ceiling
    assert delays == [0.2, 0.4, 0.5]
    assert [f.next_status for f in queue.finished] == ["pending", "pending", "pending", "dead"]
    assert [f.attempt for f in queue.finished] == [1, 2, 3, 4]
