"""Running an app's work in a test: the real worker and scheduler, on the test clock.

``drain()`` runs what is due now; ``advance()`` lets test time pass, running each retry and
cron fire at its own time. Nothing runs in the background between calls.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from solo_os import store as store_mod
from solo_os.core import records
from solo_os.outbound import http as http_mod
from solo_os.runtime import scheduler as scheduler_mod
from solo_os.runtime import worker as worker_mod

if TYPE_CHECKING:
    from solo_os.testing._harness import Solo

POLL = 0.005  # seconds between looks at the queue while draining
MAX_SKIP = timedelta(days=366)  # drain(skip_retries=True) gives up past this much test time


class DrainTimeout(AssertionError):
    """Work was still running or due when ``drain``'s real-time ``timeout`` ran out."""



class Driver:
    """Runs a ``Solo``'s due work: its worker, per call, and its scheduler."""

    def __init__(self, solo: Solo) -> None:
        self._solo = solo
        self.scheduler: scheduler_mod.Scheduler | None = None
        if solo.app.schedules:
            self.scheduler = scheduler_mod.Scheduler(solo.app, solo.store, clock=solo.clock)

    async def start(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.tick(self._solo.clock())  # schedules become active at test start

    async def drain(self, *, skip_retries: bool = False, timeout: float = 30.0) -> int:
        """Run every execution due at the current test time, and what those make due, until
        nothing is due or running; return how many attempts ran.

        A retry delayed into the future waits for the clock (``clock.advance`` then
        ``drain``), unless ``skip_retries``: then the clock jumps to each retry's time, with
        cron fires on the way run at theirs, until no execution is pending at all (each
        retry ends in success or the dead-letter queue). ``timeout`` is real seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ran = await self._run_due(deadline)
        if not skip_retries:
            return ran
        limit = self._solo.clock() + MAX_SKIP
        while (due := await self._next_retry()) is not None:
            if due > limit:
                raise DrainTimeout(
                    f"drain(skip_retries=True): executions still pending after skipping"
                    f" {MAX_SKIP.days} days of test time"
                )
            ran += await self.advance_to(due, deadline)
        return ran

    async def advance(
        self, delta: timedelta | float = 0.0, /, *, timeout: float = 30.0, **parts: float
    ) -> int:
        """Let ``delta`` (or ``minutes=5``-style parts) of test time pass with the app running:
        every retry and cron fire in between runs at its own time. Returns attempts run."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        step += timedelta(**parts)
        if step < timedelta(0):
            raise ValueError(f"advance: time does not go backwards ({step})")
        deadline = asyncio.get_running_loop().time() + timeout
        return await self.advance_to(self._solo.clock() + step, deadline)

    async def advance_to(self, target: datetime, deadline: float) -> int:
        ran = await self._run_due(deadline)
        while True:
            now = self._solo.clock()
            candidates = (await self._next_retry(), self._next_fire(now))
            step = min((t for t in candidates if t is not None and t > now), default=None)
            if step is None or step >= target:
                self._solo.clock.set(max(target, now))
                return ran + await self._run_due(deadline)
            self._solo.clock.set(step)
            ran += await self._run_due(deadline)

    def _next_fire(self, now: datetime) -> datetime | None:
        fires = [s.cron.next_after(now) for s in self._solo.app.schedules.values()]
        return min(fires, default=None)

    async def _next_retry(self) -> datetime | None:
        pending = await self._solo.store.list_executions(store_mod.Filters(status="pending", limit=0))
        waiting = await self._solo.store.list_executions(store_mod.Filters(status="waiting", limit=0))
        return min((x.run_after for x in pending + waiting if x.run_after is not None), default=None)

    async def _busy(self) -> list[records.Execution]:
        """Executions running, or pending and due now."""
        now = self._solo.clock()
        found = await self._solo.store.list_executions(store_mod.Filters(status="running", limit=0))
        pending = await self._solo.store.list_executions(store_mod.Filters(status="pending", limit=0))
        # A waiting execution whose time came (a sleep, a timeout) is due too.
        pending += await self._solo.store.list_executions(store_mod.Filters(status="waiting", limit=0))
        return found + [x for x in pending if x.run_after is None or x.run_after <= now]

    async def tick(self) -> None:
        """Let the scheduler fire what is due (and start queued fires once nothing runs)."""
        if self.scheduler is not None:
            await self.scheduler.tick(self._solo.clock())

    def _worker(self) -> worker_mod.Worker:
        """The real worker, on the test clock, its ``ctx.http`` going to ``http_transport``."""
        solo = self._solo
        options: dict[str, Any] = {"poll_interval": POLL, "shutdown_grace": 3600.0}
        if solo.concurrency:
            options["concurrency"] = solo.concurrency
        worker = worker_mod.Worker(solo.app, solo.store, clock=solo.clock, **options)
        if solo.http_transport is not None:
            worker.http = http_mod.Client(
                limits=solo.app.rate_limits, options=solo.app.http_options, buckets=solo.store,
                transport=solo.http_transport,
            )
        return worker

    async def _settled(self, worker: worker_mod.Worker) -> bool:
        """Nothing due or running, twice in a row with nothing run in between. ``_busy`` reads
        one status at a time, so an execution moving between two of its reads (claimed from
        ``pending`` after the ``running`` read, say) can be missed by one look, not by two."""
        executed = worker.executed
        if await self._busy():
            return False
        await asyncio.sleep(POLL)
        return not await self._busy() and worker.executed == executed

    async def _run_due(self, deadline: float) -> int:
        await self.tick()
        if not await self._busy():
            return 0
        worker = self._worker()
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name="solo-os-test-worker")
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(POLL)
                if task.done():
                    task.result()  # the worker crashed: show why
                    raise RuntimeError("the test worker stopped on its own")
                busy = await self._busy()
                if not busy:
                    await self.tick()  # a queued cron fire starts once nothing of it runs
                    if await self._settled(worker):
                        break
                    continue
                if loop.time() > deadline:
                    shown = ", ".join(f"{x.handler} ({x.status}, attempt {x.attempts})" for x in busy[:10])
                    raise DrainTimeout(f"drain: still running or due when the timeout ran out: {shown}")
        finally:
            stop.set()
            await task
        return worker.executed
