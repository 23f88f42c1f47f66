"""The quiet half of a ``QueuePort`` double for worker tests: no leases to renew or release, no
lost executions, nothing to reap or reschedule, and a wake-up event. A test's double subclasses
it and gives ``finish`` (and whatever else it watches); ``claim`` hands out ``due``. ``due_jobs(n)`` makes the
claimed executions ``1..n`` of a handler named ``job``."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from solo_os import App, Context, config, sources
from solo_os.core import records
from solo_os.store import Reaped


def due_jobs(n: int) -> list[records.Claimed]:
    """Executions 1..n of handler ``job`` (event ids 1001..), first attempts of three."""
    now = datetime(2026, 12, 5, tzinfo=UTC)
    return [
        records.Claimed(
            id=uuid.UUID(int=i),
            event_id=uuid.UUID(int=1000 + i),
            handler="job",
            attempt=1,
            max_attempts=3,
            correlation_id=f"c{i}",
            source="billing",
            event_type="job",
            idempotency_key=f"k{i}",
            received_at=now,
            headers={},
            document={"n": i},
        )
        for i in range(1, n + 1)
    ]


class QuietQueue:
    def __init__(self, due: list[records.Claimed] | None = None) -> None:
        self._work = asyncio.Event()
        self.due = list(due or [])  # handed out in order by ``claim``
        self.claimed: list[uuid.UUID] = []
        self.lost_claims = 0  # claims of a lost execution to run alone: there are none
        self.renewed: set[uuid.UUID] = set()  # every id whose lease the worker renewed

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_seconds: float, *, lost: bool | None = None
    ) -> list[records.Claimed]:
        if lost:
            self.lost_claims += 1
            return []
        out, self.due = self.due[:limit], self.due[limit:]
        self.claimed += [c.id for c in out]
        return out

    async def renew(
        self, worker_id: str, now: datetime, lease_seconds: float, ids: Sequence[uuid.UUID] | None = None
    ) -> int:
        self.renewed.update(ids or [])
        return len(ids or [])

    async def release(self, worker_id: str, ids: Iterable[uuid.UUID] | None = None) -> int:
        return 0

    async def give_back(self, worker_id: str, ids: Iterable[uuid.UUID]) -> int:
        return 0

    async def lost_due(self, now: datetime) -> bool:
        return False

    async def reap(self, now: datetime, limit: int = 500, max_losses: int = 3) -> list[Reaped]:
        return []

    async def reschedule(
        self, worker_id: str, execution_id: uuid.UUID, attempt: int, run_after: datetime, reason: str
    ) -> bool:
        return False

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    def wake_local(self) -> None:
        self._work.set()

    async def save_logs(self, *_: Any) -> None:
        return None


def job_app(
    service: str, run_seconds: float, running: list[int], most: list[int],
    started: list[int] | None = None,
) -> App:
    """An app whose handler ``job`` sleeps ``run_seconds``, counting in ``running[0]`` the
    handlers running now, in ``most[0]`` the most at once, and in ``started`` each ``event["n"]``."""
    app = App(service=service, settings=config.Settings(DATABASE_URL="sqlite:///unused.db"))  # type: ignore[call-arg]
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job", name="job")
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if started is not None:
            started.append(event["n"])
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(run_seconds)
        running[0] -= 1

    return app


async def until(check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` every 5 ms until it holds; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)
