"""The worker: claims due executions in batches, runs their handlers, writes outcomes back.

Claims are leased: a heartbeat renews the lease of everything this worker runs, and any worker
takes back executions whose lease expired (their worker died). Outcomes are written through a
group commit, so a burst of finished executions costs one transaction.

Nothing an execution holds stops the worker: input that cannot be read back, and anything a
handler raises (``SystemExit``, ``KeyboardInterrupt`` included), fails that execution only.
An execution whose attempt was lost with its process runs alone next time (``claim(lost=True)``
once nothing else runs), so a poison that kills the process takes no neighbours down again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import structlog
from opentelemetry import trace

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import flow, records
from solo_os.observability import metrics, tracing
from solo_os.outbound import http as http_mod
from solo_os.runtime import attempt as attempt_mod
from solo_os.runtime import batch as _batch
from solo_os.runtime import claim_ahead, context, deadlines, handoff, outcomes, workflow
from solo_os.store import ports

log = structlog.get_logger("solo_os.worker")
CLAIM_BATCH = 200


class WorkerStore(ports.QueuePort, ports.StepPort, ports.LogPort, ports.RateLimitPort, Protocol):
    """What the worker uses of the store: the queue, the steps, the execution logs, and the
    rate-limit buckets its ``ctx.http`` shares with every process (and, where it has them,
    the workflow calls: ``runtime/workflow.py``)."""


class UnknownHandler(errors.SoloOSError):
    """The execution names a handler this process does not have (an older or newer deploy)."""


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Worker:
    def __init__(
        self,
        application: app_mod.App,
        store: WorkerStore,
        *,
        concurrency: int | None = None,
        lease_seconds: float | None = None,
        poll_interval: float | None = None,
        shutdown_grace: float | None = None,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = store_mod.utcnow,
    ) -> None:
        s = application.settings
        self.app = application
        self.store = store
        if (plan := flow.plan(application.handlers.values())) and isinstance(store, ports.FlowPort):
            store.use_flow(plan)  # flow control (SPEC 7): the claim takes those too
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or s.worker_concurrency
        self.lease_seconds = lease_seconds or s.lease_seconds
        self.poll_interval = poll_interval or s.poll_interval
        self.shutdown_grace = s.shutdown_grace_seconds if shutdown_grace is None else shutdown_grace
        #: ``time.monotonic()`` when the process was told to stop (set by the runtime).
        self.stop_requested_at: float | None = None
        self.clock = clock
        self.max_losses = s.max_losses
        self.looping = False  # the claim loop runs (readiness)
        self._alone: UUID | None = None  # an execution lost before, running alone
        self._draining_for_lost = False
        self._next_lost_check = 0.0
        # Plain ``def`` handlers run here, not in asyncio's small default pool: a handler that
        # hangs keeps its thread, and must not starve the others of threads.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency + 32, thread_name_prefix="solo-os-handler"
        )
        self._threads_busy = 0  # handler calls running in self._threads (timed-out ones too)
        self._threads_lock = threading.Lock()
        self._sync_running: set[UUID] = set()
        self.abandoned_threads = False
        self._inflight: dict[UUID, asyncio.Task[None]] = {}  # its outcome written, or not yet
        self._running: set[UUID] = set()  # handlers running: what ``concurrency`` counts
        self._ahead = claim_ahead.ClaimAhead(self.concurrency)  # each starts as a slot frees
        self._slot_freed = asyncio.Event()
        self._taker = handoff.Taker(self)  # SQLite: ingests of this process lease to this worker
        self._finisher: _batch.GroupCommit[records.Finished, bool] = _batch.GroupCommit(
            self._write_finished, max_batch=500, name="finish"
        )
        self._rng = random.Random()
        self._deadlines = deadlines.Deadlines()
        self._dead_hooks: list[Callable[..., Any]] = []
        self.executed = 0
        # One outbound HTTP client (connection pool, rate-limit gates) for every handler here.
        self.http = http_mod.Client(
            limits=application.rate_limits, options=application.http_options, buckets=store
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; then finish or release what runs, and return."""
        self._finisher.start()
        await self.http.start()
        background = [
            asyncio.create_task(self._heartbeat(stop), name="solo-os-heartbeat"),
            asyncio.create_task(self._reaper(stop), name="solo-os-reaper"),
            asyncio.create_task(workflow.wake_loop(self.store, self.clock, stop)),
        ]
        log.info("worker.started", worker_id=self.worker_id, concurrency=self.concurrency)
        try:
            await self._loop(stop)
        finally:
            await self._shutdown()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._finisher.close()
            await self.http.aclose()
            self._threads.shutdown(wait=False, cancel_futures=True)
            if self._threads_busy:
                # Handler threads still run (hung, spinning, or past their timeout): nothing
                # can stop a thread, so the CLI exits without joining them.
                self.abandoned_threads = True
            log.info("worker.stopped", worker_id=self.worker_id, executed=self.executed)

    async def _loop(self, stop: asyncio.Event) -> None:
        """Claim and start executions until ``stop``. No exception ends it: a store failure is
        retried with backoff, anything else is logged as an error and retried the same way."""
        failures = 0
        self.looping = True
        try:
            while not stop.is_set():
                try:
                    more = await self._claim_some()
                    failures = 0
                except errors.StoreError as exc:
                    failures += 1
                    delay = min(10.0, 0.2 * 2**failures)
                    log.warning("worker.claim_failed", error=str(exc), retry_in=round(delay, 2))
                    await _wait_any(stop, timeout=delay)
                    continue
                except Exception:
                    failures += 1
                    delay = min(10.0, 0.2 * 2**failures)
                    log.exception("worker.loop_failed", retry_in=round(delay, 2))
                    await _wait_any(stop, timeout=delay)
                    continue
                if not more:
                    await self._idle(stop)
        finally:
            self.looping = False

    async def _claim_some(self) -> bool:
        """Claim what fits and start it; True when more may be due right now."""
        if self._alone is not None:
            return False  # an execution lost before runs alone: wait for it
        self._start_ready()
        now = self.clock()
        if not self._inflight and not self._ahead.ready and not self._taker.handing:
            self._draining_for_lost = False
            lost = []
            if time.monotonic() >= self._next_lost_check:
                # A read first: the claim is a write (SQLite's one writer), and lost executions
                # are rare; looked for every few seconds, and at once after a reap here.
                self._next_lost_check = time.monotonic() + min(5.0, self.lease_seconds)
                if await self.store.lost_due(now):  # none leased (its key is full): look later
                    lost = await self.store.claim(self.worker_id, 1, now, self.lease_seconds, lost=True)
            if lost:
                self._next_lost_check = 0.0  # there may be more
                c = lost[0]
                log.warning(
                    "execution.isolated", execution_id=str(c.id), handler=c.handler,
                    losses=c.losses, attempt=c.attempt,
                )
                self._alone = c.id
                self._start(c)
                return False
        elif self._draining_for_lost:
            return False  # finish what runs, then take the lost one alone
        elif time.monotonic() >= self._next_lost_check:
            # Under steady load this worker is never empty: look for lost executions now and
            # then, and stop claiming until what runs has finished if there are any.
            self._next_lost_check = time.monotonic() + min(5.0, self.lease_seconds)
            if await self.store.lost_due(now):
                self._draining_for_lost = True
                self._next_lost_check = 0.0
                return False
        if not (limit := self._wanted()):
            return False  # held back: wait for more room
        t0 = time.perf_counter()
        claimed = await self.store.claim(self.worker_id, limit, now, self.lease_seconds, lost=False)
        self._ahead.claim_took(time.perf_counter() - t0)
        self._ahead.ready.extend(claimed)
        self._start_ready()
        return len(claimed) == limit

    def _start_ready(self) -> None:
        """Start executions claimed ahead while slots are free."""
        ready = self._ahead.ready
        while ready and len(self._running) < self.concurrency:
            self._start(ready.popleft())

    def _start(self, c: records.Claimed) -> None:
        task = asyncio.create_task(self._execute(c))
        self._inflight[c.id] = task
        self._running.add(c.id)
        task.add_done_callback(functools.partial(self._ended, c))

    def _ended(self, c: records.Claimed, task: asyncio.Task[None]) -> None:
        """Whatever happened in ``_execute``, its slot is free again; an error that escaped it
        (a bug, not the handler's: those are attempts) is logged, and the lease runs out."""
        if self._inflight.get(c.id) is task:
            del self._inflight[c.id]
        self._running.discard(c.id)
        if self._alone == c.id:
            self._alone = None
        self._slot_freed.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "execution.crashed", execution_id=str(c.id), handler=c.handler,
                attempt=c.attempt, error=f"{type(exc).__name__}: {exc}",
            )

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until work may be due, a slot frees up (when held back), stop, or the poll
        interval. A NOTIFY that came while held back was spent: a freed slot must wake us."""
        self._slot_freed.clear()
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.store.wait_for_work(self.poll_interval))
        ]
        if not self._wanted() or self._ahead.ready or self._alone is not None or self._draining_for_lost:
            waiters.append(asyncio.ensure_future(self._slot_freed.wait()))
        waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _wanted(self) -> int:
        """How many to claim now (``claim_ahead``; outcomes being written count as leased),
        or 0 if that is under a quarter of ``concurrency``: held back, wait for more room."""
        leased = len(self._inflight) + len(self._ahead.ready) + self._taker.handing  # + hand-offs
        n = min(self._ahead.wanted(len(self._running) + self._taker.handing, leased), CLAIM_BATCH)
        return n if n >= max(1, self.concurrency // 4) else 0

    async def _shutdown(self) -> None:
        if self._ahead.ready:  # claimed ahead, never started: back to the queue as they were
            ahead = [c.id for c in self._ahead.ready]
            self._ahead.ready.clear()
            try:
                log.info("worker.given_back", executions=await self.store.give_back(self.worker_id, ahead))
            except errors.StoreError as exc:  # their leases run out: taken back as lost
                log.warning("worker.give_back_failed", error=str(exc))
        if self._inflight:
            # Most of the grace period: what is still running then is released (recorded as
            # interrupted) in the rest, and the process ends within the grace period.
            # Counted from the stop signal, not from when this loop noticed it.
            since = time.monotonic() - (self.stop_requested_at or time.monotonic())
            drain = max(0.0, self.shutdown_grace - shutdown_margin(self.shutdown_grace) - since)
            log.info("worker.draining", running=len(self._inflight), grace_seconds=self.shutdown_grace)
            _, pending = await asyncio.wait(list(self._inflight.values()), timeout=drain)
            if pending:
                ids = [i for i, t in self._inflight.items() if t in pending]
                # A plain ``def`` handler's thread cannot be cancelled; it runs on after its
                # lease is released. The CLI exits without waiting for such threads.
                self.abandoned_threads = any(i in self._sync_running for i in ids)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                try:
                    released = await self.store.release(self.worker_id, ids)
                    log.info("worker.released", executions=released)
                except errors.StoreError as exc:
                    log.warning("worker.release_failed", error=str(exc))

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        interval = self.lease_seconds / 3
        while not stop.is_set():
            await _wait_any(stop, timeout=interval)
            if self._inflight or self._ahead.ready:
                try:
                    await self.store.renew(
                        self.worker_id, self.clock(), self.lease_seconds,
                        [*self._inflight, *(c.id for c in self._ahead.ready)],
                    )
                except errors.StoreError as exc:
                    log.warning("worker.renew_failed", error=str(exc))
                except Exception:
                    log.exception("worker.renew_failed")

    async def _reaper(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reaped = await self.store.reap(self.clock(), max_losses=self.max_losses)
                if any(r.status == "pending" for r in reaped):
                    self._next_lost_check = 0.0  # run them (alone) without waiting
                for r in reaped:
                    metrics.attempt_finished(r.handler, "lost", r.status)
                    log.warning(
                        "execution.lost", execution_id=str(r.execution_id), attempt=r.attempt,
                        worker=r.worker_id, status=r.status, handler=r.handler,
                        correlation_id=r.correlation_id,
                    )
                    if r.status == "dead":
                        await self._fire_dead(
                            records.DeadLetter(
                                execution_id=r.execution_id, handler=r.handler,
                                event_id=r.event_id, correlation_id=r.correlation_id,
                                attempts=r.attempt, error_type="LeaseExpired",
                                error=store_mod.lost_error(r.losses),
                            )
                        )
            except errors.StoreError as exc:
                log.warning("worker.reap_failed", error=str(exc))
            except Exception:
                log.exception("worker.reap_failed")
            await _wait_any(stop, timeout=self.lease_seconds / 2 * (0.5 + self._rng.random()))

    # --- one execution ----------------------------------------------------------------------

    async def _execute(self, c: records.Claimed) -> None:
        started = self.clock()
        t0 = time.perf_counter()
        handler = self.app.handlers.get(c.handler)
        hlog = self._bind(c, started)
        outcome: records.AttemptOutcome = "succeeded"
        error: BaseException | None = None
        value: Any = None  # the handler's return value, stored with the execution
        # The handler is awaited in this very frame, inside this try: asyncio throws what a
        # thread's future raised into the task's top coroutine, and a GeneratorExit thrown
        # across another coroutine frame would skip these handlers.
        try:
            fn, args = self._prepare(c, handler, hlog, started)
            # The span, and the handler's timeout (as asyncio.timeout; one timer for all).
            with self._span(c), self._deadlines.limit(fn.timeout):
                if fn.is_async:
                    value = await fn.fn(*args)
                else:
                    self._sync_running.add(c.id)
                    try:
                        call = functools.partial(
                            contextvars.copy_context().run, self._in_thread, fn.fn, *args
                        )
                        loop = asyncio.get_running_loop()
                        value = await loop.run_in_executor(self._threads, call)
                    finally:
                        self._sync_running.discard(c.id)
        except TimeoutError as exc:
            outcome, error = "timed_out", exc
        except asyncio.CancelledError as exc:
            if attempt_mod.cancelling():
                raise  # shutdown: the lease is released by _shutdown
            outcome, error = "failed", exc  # raised by the handler itself
        except Exception as exc:
            outcome, error = "failed", exc
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt, GeneratorExit raised by handler code: a failed
            # attempt of this execution, never the end of the worker. Real signals do not
            # arrive this way (the runtime handles SIGTERM/SIGINT on the event loop).
            outcome, error = "failed", exc
        duration = time.perf_counter() - t0
        self._slot_free(c, duration)  # the next claim overlaps this outcome's write
        await context.flush_logs(self.store, c.id, c.attempt)  # ctx.log's lines, per attempt
        finished = attempt_mod.finished(
            self.app, self._rng, c, handler, started, self.clock(), outcome, error, value
        )
        try:  # kept and retried while the store is unavailable (runtime/outcomes.py)
            await outcomes.until_stored(
                functools.partial(self._record, c, handler, hlog, finished, error, duration), hlog
            )
        except errors.StoreError as exc:  # refused, not unavailable: the lease runs out
            hlog.error("execution.unrecorded", error=str(exc))
        finally:
            self._inflight.pop(c.id, None)
            if self._alone == c.id:
                self._alone = None
            self._slot_freed.set()
            self.executed += 1

    def _slot_free(self, c: records.Claimed, ran: float) -> None:
        self._running.discard(c.id)
        self._ahead.run_took(ran)
        self._start_ready()
        self._slot_freed.set()

    def _bind(self, c: records.Claimed, started: datetime) -> Any:
        """The attempt's logger; its fields bound for the handler's loggers too."""
        bound = attempt_mod.log_fields(c)
        # Each execution runs in its own task with its own copy of the context: what is bound
        # here is seen by the handler's loggers and gone when the task ends.
        structlog.contextvars.bind_contextvars(**bound)
        if c.attempt == 1 and c.received_at is not None:
            metrics.receive_to_start.observe(max(0.0, (started - c.received_at).total_seconds()))
        return attempt_mod.AttemptLog(bound)

    def _prepare(
        self, c: records.Claimed, handler: app_mod.Handler | None, hlog: Any, started: datetime
    ) -> tuple[app_mod.Handler, tuple[Any, ...]]:
        """The handler and its arguments (``ctx``, and the payload for an event handler)."""
        if handler is None:
            raise UnknownHandler(f"no handler named {c.handler!r} in this app")
        if c.input_error is not None:
            # Decoding is deterministic: retrying cannot make the stored event readable.
            raise errors.NonRetryable(f"cannot read the stored event: {c.input_error}")
        ctx = attempt_mod.context_for(
            self.app, self.store, self.clock, self.http, c, handler, hlog, started
        )
        if handler.kind == "cron":
            return handler, (ctx,)
        return handler, (attempt_mod.argument(self.app, handler, c), ctx)

    @staticmethod
    def _span(c: records.Claimed) -> contextlib.AbstractContextManager[Any]:
        if tracing.idle(c.trace_parent):
            return tracing.NOT_RECORDING  # its attributes are not even built
        return tracing.span(
            f"execute {c.handler}",
            parent=c.trace_parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={"solo_os.execution_id": str(c.id), "solo_os.attempt": c.attempt},
        )

    async def _record(
        self,
        c: records.Claimed,
        handler: app_mod.Handler | None,
        hlog: Any,
        finished: records.Finished,
        error: BaseException | None,
        duration: float,
    ) -> None:
        """Write the attempt's outcome; log and count it, and call the dead hooks."""
        if finished.extra.get("reason") == "rate_limited":
            # No request was sent: give the attempt back (see attempt.finished).
            applied = await self.store.reschedule(
                self.worker_id, c.id, c.attempt, finished.run_after or finished.ended_at,
                f"{finished.error_type}: {finished.error_message}",
            )
        else:  # a suspension was written by the call that suspended (runtime/workflow.py)
            applied = finished.next_status == "waiting" or await self._finisher.submit(finished)
        if not applied:
            # Our lease ran out and the execution was taken back: its outcome is the
            # other attempt's to write.
            hlog.warning("execution.lease_lost", outcome=finished.outcome)
        else:
            attempt_mod.report(hlog, handler, finished, error, duration)
            if finished.next_status == "dead":
                await self._fire_dead(attempt_mod.dead_letter(c, finished))

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._threads_lock:
            self._threads_busy += 1
        try:
            return fn(*args)
        finally:
            with self._threads_lock:
                self._threads_busy -= 1

    async def _write_finished(self, batch: Sequence[records.Finished]) -> list[bool]:
        applied = {id(r) for r in await self.store.finish(self.worker_id, batch)}
        return [id(r) in applied for r in batch]

    async def _fire_dead(self, dead: records.DeadLetter) -> None:
        await attempt_mod.fire_dead(self.app.dead_hooks, dead)


def shutdown_margin(grace: float) -> float:
    """The part of the shutdown grace kept for after the drain: releasing what still runs,
    closing the store, and time lost to handler threads that hold the GIL."""
    return min(3.0, grace / 2)


async def _wait_any(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
