"""Durable workflow calls of a handler: ``ctx.sleep``, ``sleep_until``, ``wait_for_event``,
``send`` and ``invoke`` (``Context`` delegates here).

A handler is re-run from the top after every suspension; each call is memoized by name in
``workflow_calls`` (``store/_workflow.py``), so what completed returns its stored result and
is not repeated. A call that must wait registers what it waits for and moves the execution to
``waiting`` in one transaction, then raises ``Suspended``: the worker's slot is free at once,
and the attempt is given back (it spends none of the budget). The execution resumes (back to
``pending``, any worker) at the wake time, when a matching event is ingested, or when an
invoked child ends; the handler runs again and the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from solo_os import app as app_mod
from solo_os import errors
from solo_os.core import records
from solo_os.core import workflow as wf
from solo_os.store import _workflow, ports

log = structlog.get_logger("solo_os.workflow")


class Suspended(BaseException):
    """Raised out of the handler when a call waits: the attempt ends without failing.

    A ``BaseException`` so that a handler's ``except Exception`` does not swallow it.
    """

    def __init__(self, kind: str, name: str, until: datetime | None) -> None:
        self.kind = kind
        self.name = name
        self.until = until
        super().__init__(f"{kind} {name!r} waits" + (f" until {until.isoformat()}" if until else ""))


class Cancelled(BaseException):
    """Raised at a step boundary when a ``cancel_on`` event asked the execution to stop."""


def seconds(value: timedelta | float | int | None, what: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    raise errors.StepError(f"{what} must be a timedelta or seconds, not {type(value).__name__}")


class Workflow:
    """The workflow calls of one attempt of one execution."""

    def __init__(
        self,
        application: app_mod.App,
        store: ports.WorkflowPort,
        clock: Callable[[], datetime],
        *,
        execution_id: UUID,
        attempt: int,
        correlation_id: str,
        started_at: datetime,
        handler_name: str | None = None,
    ) -> None:
        self.app = application
        self.store = store
        self.clock = clock
        self.execution_id = execution_id
        self.attempt = attempt
        self.correlation_id = correlation_id
        self.started_at = started_at
        handler = application.handlers.get(handler_name) if handler_name else None
        s = handler.flow.singleton if handler is not None and handler.flow is not None else None
        by_singleton = s is not None and s.mode == "cancel"
        self.cancellable = handler is None or bool(handler.cancel_on) or by_singleton
        self._why = "cancelled by a cancel_on event"
        if handler is not None and not handler.cancel_on and s is not None:
            self._why = "singleton: cancelled in favour of a newer execution of its key"
        self._calls: dict[str, _workflow.Call] | None = None

    async def check_cancel(self) -> None:
        """A step boundary: stop here if a ``cancel_on`` event, or a newer execution of a
        ``Singleton(mode="cancel")`` key, asked for it (only such handlers can be asked: the
        others pay no read)."""
        if self.cancellable and await self.store.cancel_requested(self.execution_id):
            raise Cancelled(self._why)

    async def _memo(self, name: str, kind: str) -> _workflow.Call | None:
        if self._calls is None:
            self._calls = await self.store.load_calls(self.execution_id)
        call = self._calls.get(name)
        if call is not None and call.kind != kind:
            raise errors.StepError(f"{name!r} was a {call.kind} in an earlier run, now a {kind}")
        return call

    async def _suspend(self, s: _workflow.Suspension) -> _workflow.Call:
        found = await self.store.suspend(s, self.clock())
        if found is None:
            raise Suspended(s.kind, s.name, s.wake_at)
        return found

    def _suspension(
        self, name: str, kind: str, wake_at: datetime | None, **more: Any
    ) -> _workflow.Suspension:
        return _workflow.Suspension(
            execution_id=self.execution_id, attempt=self.attempt, name=name, kind=kind,
            started_at=self.started_at, wake_at=wake_at, **more,
        )

    # --- sleep ----------------------------------------------------------------------------------

    async def sleep_until(self, name: str, when: datetime) -> None:
        if when.tzinfo is None or when.utcoffset() is None:
            raise errors.StepError("sleep_until needs a timezone-aware datetime")
        call = await self._memo(name, "sleep")
        if call is not None and call.status != "waiting":
            return
        wake = call.wake_at if call is not None and call.wake_at is not None else when
        now = self.clock()
        if wake <= now:
            if call is None:
                await self.store.record_call(self.execution_id, name, "sleep", now)
            else:
                await self.store.settle(self.execution_id, name, "done", None, now)
            return
        await self._suspend(self._suspension(name, "sleep", wake))

    # --- wait for an event -------------------------------------------------------------------------

    async def wait_for_event(
        self, name: str, source: str, event_type: str, match: Mapping[str, Any] | None,
        timeout: timedelta | None,
    ) -> Any:
        try:
            wanted = wf.check_match(match)
        except ValueError as exc:
            raise errors.StepError(str(exc)) from None
        call = await self._memo(name, "wait")
        if call is not None and call.status == "done":
            return call.result
        if call is not None and call.status == "timed_out":
            return None
        now = self.clock()
        if call is not None and call.wake_at is not None and call.wake_at <= now:
            settled = await self.store.settle(self.execution_id, name, "timed_out", None, now)
            return settled.result if settled is not None and settled.status == "done" else None
        wake = call.wake_at if call is not None else (now + timeout if timeout is not None else None)
        found = await self._suspend(
            self._suspension(name, "wait", wake, source=source, type=event_type, match=wanted)
        )
        return found.result

    # --- send -----------------------------------------------------------------------------------

    async def send(self, name: str, event_type: str, data: Any, source: str) -> UUID:
        call = await self._memo(name, "send")
        if call is not None and call.event_id is not None:
            return call.event_id
        key = f"send:{self.execution_id}:{name}"  # a retried sender meets its stored event
        now = self.clock()
        try:
            event = self.app.new_event(
                source, event_type, data, key=key, correlation_id=self.correlation_id,
                received_at=now,
            )
        except (TypeError, ValueError) as exc:
            raise errors.StepError(f"send {name!r}: the data is not JSON: {exc}") from None
        (result,) = await self.store.ingest([event])
        await self.store.record_call(
            self.execution_id, name, "send", now,
            result={"source": source, "type": event_type}, event_id=result.event_id,
        )
        return result.event_id

    # --- invoke ---------------------------------------------------------------------------------

    def _handler(self, handler: Callable[..., Any] | str) -> app_mod.Handler:
        for h in self.app.handlers.values():
            if h.name == handler or (callable(handler) and h.fn is handler):
                return h
        raise errors.StepError(f"invoke: no handler {getattr(handler, '__name__', handler)!r} in this app")

    async def invoke(
        self, name: str, handler: Callable[..., Any] | str, data: Any, timeout: timedelta | None
    ) -> Any:
        target = self._handler(handler)
        call = await self._memo(name, "invoke")
        now = self.clock()
        if call is not None and call.status == "waiting":
            call = await self._settle_child(call, now)
        if call is not None and call.status != "waiting":
            return _outcome(call)
        child_id = call.child_id if call is not None else uuid.uuid5(self.execution_id, name)
        wake = call.wake_at if call is not None else (now + timeout if timeout is not None else None)
        try:
            child = self.app.new_event(
                "internal", f"invoke:{target.name}", data, key=f"invoke:{self.execution_id}:{name}",
                correlation_id=self.correlation_id, received_at=now, handlers=[target],
            )
        except (TypeError, ValueError) as exc:
            raise errors.StepError(f"invoke {name!r}: the data is not JSON: {exc}") from None
        await self._suspend(
            self._suspension(
                name, "invoke", wake, child=child, child_handler=target.name, child_id=child_id,
                child_max_attempts=self.app.policy(target).max_attempts or 1,
            )
        )
        raise AssertionError("unreachable: an invoke always suspends")

    async def _settle_child(self, call: _workflow.Call, now: datetime) -> _workflow.Call:
        """A waiting invoke whose child ended (or whose time is up) is settled now."""
        state = await self.store.child_state(call.child_id) if call.child_id else None
        if state is not None and state[0] in _workflow.TERMINAL:
            result = {"status": state[0], "value": state[1], "error": state[2]}
            settled = await self.store.settle(self.execution_id, call.name, "done", result, now)
            return settled or call
        if call.wake_at is not None and call.wake_at <= now:
            settled = await self.store.settle(self.execution_id, call.name, "timed_out", None, now)
            return settled or call
        return call


def _outcome(call: _workflow.Call) -> Any:
    """An invoke's memo: the child's value, or ``InvokeError``."""
    if call.status == "timed_out":
        raise errors.InvokeError(
            f"invoke {call.name!r}: the child did not finish in time", status="timed_out",
            child_id=call.child_id,
        )
    result = call.result or {}
    if result.get("status") == "succeeded":
        return result.get("value")
    raise errors.InvokeError(
        f"invoke {call.name!r}: the child ended {result.get('status')}: {result.get('error')}",
        status=str(result.get("status")), child_id=call.child_id,
    )


def _port(store: object) -> ports.WorkflowPort | None:
    """The store's workflow calls (a queue double in a unit test may have none)."""
    port: ports.WorkflowPort | None = getattr(store, "workflow", None)
    return port


def for_attempt(
    application: app_mod.App,
    store: object,
    clock: Callable[[], datetime],
    c: records.Claimed,
    started_at: datetime | None = None,
) -> Workflow | None:
    """The workflow calls of the attempt ``c`` (``ctx.sleep`` and the others), which started
    at ``started_at`` (default: now)."""
    port = _port(store)
    if port is None:
        return None
    return Workflow(
        application, port, clock, execution_id=c.id, attempt=c.attempt,
        correlation_id=c.correlation_id, started_at=started_at or clock(), handler_name=c.handler,
    )


async def wake_loop(
    owner: object, clock: Callable[[], datetime], stop: asyncio.Event, *, most: float = 1.0
) -> None:
    """Turn waiting executions whose time came (a sleep's end, a wait's timeout) into pending
    ones, at that time: each worker process sleeps until the earliest wake time it knows of. A
    wake time stored meanwhile (by this process, or by another: a ``NOTIFY`` on PostgreSQL)
    ends the sleep early when it is earlier; at most ``most`` seconds pass without a look (a
    signal lost while the listener reconnects, another SQLite process's timer)."""
    store = _port(owner)
    if store is None:
        return
    failures = 0
    while not stop.is_set():
        delay, upcoming = most, None
        try:
            await store.wake_due(clock())
            upcoming = await store.next_wake()
            if upcoming is not None:
                # A hair after it (a timer may fire a little early); a past one: soon again.
                delay = min(most, max(0.01, (upcoming - clock()).total_seconds() + 0.001))
            failures = 0
        except errors.StoreError as exc:
            failures += 1
            delay = min(10.0, 0.2 * 2**failures)
            log.warning("workflow.wake_failed", error=str(exc), retry_in=round(delay, 2))
        except Exception:
            failures += 1
            delay = min(10.0, 0.2 * 2**failures)
            log.exception("workflow.wake_failed", retry_in=round(delay, 2))
        await _sleep(store, stop, upcoming, delay)


async def _sleep(
    store: ports.WorkflowPort, stop: asyncio.Event, upcoming: datetime | None, delay: float
) -> None:
    """``delay`` seconds, or until stopping or an earlier wake time is stored."""
    stopping = asyncio.ensure_future(stop.wait())
    timers = asyncio.ensure_future(store.wait_for_timers(upcoming, delay))
    try:
        await asyncio.wait({stopping, timers}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopping, timers):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(stopping, timers, return_exceptions=True)
