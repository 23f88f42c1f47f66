"""One attempt of one execution, around the handler call: what the handler receives, what its
outcome becomes (succeeded, retried at a time, given back, or dead), and how it is logged.

The worker (``runtime/worker.py``) claims, calls the handler and writes the outcome back;
everything here is decided from the claimed row, the app's policies and the error raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import random
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pydantic
import structlog

from solo_os import app as app_mod
from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import records, retry
from solo_os.observability import metrics
from solo_os.outbound import http as http_mod
from solo_os.runtime import context, workflow
from solo_os.store import ports

log = structlog.get_logger("solo_os.worker")


def log_fields(c: records.Claimed) -> dict[str, Any]:
    """What every log line of the attempt carries."""
    bound: dict[str, Any] = {
        "correlation_id": c.correlation_id,
        "execution_id": str(c.id),
        "handler": c.handler,
        "attempt": c.attempt,
    }
    if c.event_id is not None:
        bound.update(event_id=str(c.event_id), source=c.source, event_type=c.event_type)
    return bound


class AttemptLog:
    """The attempt's logger: every line carries ``fields`` (as a logger bound to them would,
    the line's own keywords winning), but nothing is bound until something asks for more than
    a line (``bind``, ``is_enabled_for``, ...): most attempts write one line, and binding cost
    more than the line's merge."""

    __slots__ = ("_bound", "fields")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self._bound: Any = None

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        return getattr(log, method)(event, *args, **(self.fields | kw if kw else self.fields))

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("info", event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("warning", event, args, kw)

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("error", event, args, kw)

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            self._bound = log.bind(**self.fields)
        return getattr(self._bound, name)

    def __repr__(self) -> str:
        return f"<AttemptLog {self.fields!r}>"


def event_meta(c: records.Claimed) -> context.EventMeta | None:
    """``ctx.event``: the event that started the execution (None for a scheduled run)."""
    if c.event_id is None:
        return None
    return context.EventMeta(
        id=c.event_id,
        source=c.source or "",
        type=c.event_type or "",
        idempotency_key=c.idempotency_key or "",
        received_at=c.received_at or store_mod.utcnow(),
        headers=c.headers or {},
    )


def context_for(
    application: app_mod.App,
    store: ports.StepPort,
    clock: Callable[[], datetime],
    http: http_mod.Client,
    c: records.Claimed,
    handler: app_mod.Handler,
    hlog: Any,
    started: datetime,
) -> context.Context:
    """The handler's ``ctx``. ``ctx.event``, ``ctx.http`` and the workflow calls are made on
    first use: a handler that uses none of them (most do not) pays for none."""
    deadline = asyncio.get_running_loop().time() + handler.timeout
    return context.Context(
        execution_id=c.id,
        attempt=c.attempt,
        max_attempts=c.max_attempts,
        correlation_id=c.correlation_id,
        handler=c.handler,
        event=None if c.event_id is None else functools.partial(event_meta, c),
        log=hlog,
        steps=store,
        scheduled_at=c.scheduled_at,
        workflow=functools.partial(workflow.for_attempt, application, store, clock, c, started),
        http=functools.partial(
            http.session, execution_id=c.id, correlation_id=c.correlation_id, log=hlog,
            deadline=deadline,
        ),
    )


def argument(application: app_mod.App, handler: app_mod.Handler, c: records.Claimed) -> Any:
    """The handler's first argument: the payload, upcast and validated against its schema."""
    if c.batch is not None:  # a Batch handler: one input per event, oldest first
        return [_one(application, handler, dataclasses.replace(c, document=d)) for d in c.batch]
    if handler.flow is not None and handler.flow.batch is not None and c.event_id is not None:
        return [_one(application, handler, c)]  # no stored items (a resent event): a batch of one
    return _one(application, handler, c)


def _one(application: app_mod.App, handler: app_mod.Handler, c: records.Claimed) -> Any:
    # The event's own source: an invoked child's input came through ``internal`` as it is.
    source = application.sources.get(c.source or handler.source)
    payload = source.payload(c.document) if source is not None else c.document
    if handler.schema is None:
        return payload
    try:
        return handler.load(payload)  # upcast from an older schema version, then validate
    except pydantic.ValidationError as exc:
        # Accepted under an older schema; retrying will not make it valid.
        raise errors.NonRetryable(
            f"payload no longer matches {handler.schema.__name__}: {exc.error_count()} error(s)"
        ) from exc
    except errors.PayloadError as exc:
        details = "; ".join(str(d.get("msg")) for d in exc.details)
        raise errors.NonRetryable(f"cannot upcast payload: {details}") from exc


def finished(
    application: app_mod.App,
    rng: random.Random,
    c: records.Claimed,
    handler: app_mod.Handler | None,
    started: datetime,
    ended: datetime,
    outcome: records.AttemptOutcome,
    error: BaseException | None,
    value: Any = None,
) -> records.Finished:
    """The outcome to write back for an attempt that ended at ``ended``."""
    if error is None:
        return records.Finished(
            c.id, c.attempt, started, ended, "succeeded", "succeeded", result=stored_value(value)
        )
    if isinstance(error, (workflow.Suspended, workflow.Cancelled)):
        return _workflow_outcome(c, started, ended, error)
    if isinstance(error, errors.RateLimited):
        # ctx.http found no rate-limit token in time and sent nothing: not the handler's
        # failure, so the attempt is given back (store.reschedule) and none is spent.
        return records.Finished(
            c.id, c.attempt, started, ended, outcome, "pending",
            run_after=ended + timedelta(seconds=error.seconds),
            error_type=type(error).__name__, error_message=str(error)[:4000],
            extra={"reason": "rate_limited", "delay": error.seconds},
        )
    # The budget stored with the execution wins: a replay grants a fresh one.
    policy = dataclasses.replace(
        application.policy(handler) if handler else application.policy_default(),
        max_attempts=c.max_attempts,
    )
    decision = retry.decide(error, c.attempt, policy, rng)
    if isinstance(error, TimeoutError):
        message = f"timed out after {handler.timeout if handler else 0:g}s"
    else:
        message = str(error)[:4000]
    tb = None
    if not isinstance(error, errors.RetryAfter):
        tb = "".join(traceback.format_exception(error))[-16_000:]
    return records.Finished(
        c.id,
        c.attempt,
        started,
        ended,
        outcome,
        "dead" if decision.action == "dead" else "pending",
        run_after=ended + timedelta(seconds=decision.delay) if decision.action == "retry" else None,
        error_type=type(error).__name__,
        error_message=message,
        traceback=tb,
        extra={"reason": decision.reason, "delay": decision.delay},
    )


def _workflow_outcome(
    c: records.Claimed, started: datetime, ended: datetime, error: BaseException
) -> records.Finished:
    if isinstance(error, workflow.Suspended):
        # Written already by the call that suspended (execution waiting, attempt given back).
        return records.Finished(
            c.id, c.attempt, started, ended, "suspended", "waiting", run_after=error.until,
            extra={"reason": "suspended", "call": error.name, "kind": error.kind},
        )
    return records.Finished(  # a cancel_on event stopped it at a step boundary
        c.id, c.attempt, started, ended, "cancelled", "cancelled",
        error_type="Cancelled", error_message=str(error), extra={"reason": "cancel_on"},
    )


def stored_value(value: Any) -> str | None:
    """A handler's return value as stored JSON text (what is not JSON is stored as its text)."""
    if value is None:
        return None
    return json.dumps(value, default=str)


def dead_letter(c: records.Claimed, f: records.Finished) -> records.DeadLetter:
    """What ``app.on_dead`` hooks receive."""
    return records.DeadLetter(
        execution_id=c.id,
        handler=c.handler,
        event_id=c.event_id,
        correlation_id=c.correlation_id,
        attempts=c.attempt,
        error_type=f.error_type,
        error=f.error_message,
        source=c.source,
        event_type=c.event_type,
    )


def report(
    hlog: Any,
    handler: app_mod.Handler | None,
    f: records.Finished,
    error: BaseException | None,
    duration: float,
) -> None:
    """The attempt's log line and metrics, once its outcome is written."""
    name = handler.name if handler else "?"
    metrics.attempt_duration(name, duration)
    ms = round(duration * 1000, 2)
    if error is None:
        metrics.attempt_finished(name, "succeeded", "succeeded")
        hlog.info("execution.succeeded", duration_ms=ms)
        return
    if f.next_status in ("waiting", "cancelled"):
        metrics.attempt_finished(name, f.outcome, None if f.next_status == "waiting" else "cancelled")
        event = "execution.suspended" if f.next_status == "waiting" else "execution.cancelled"
        hlog.info(event, duration_ms=ms, call=f.extra.get("call"), until=f.run_after)
        return
    if f.next_status == "dead":
        metrics.attempt_finished(name, f.outcome, "dead")
        hlog.error(
            "execution.dead", duration_ms=ms, error_type=f.error_type, error=f.error_message,
            reason=f.extra.get("reason"),
        )
    elif isinstance(error, errors.RetryAfter):
        metrics.attempt_finished(name, "deferred", None)
        hlog.info("execution.deferred", duration_ms=ms, retry_in=f.extra.get("delay"))
    else:
        metrics.attempt_finished(name, f.outcome, None)
        hlog.warning(
            "execution.failed", duration_ms=ms, error_type=f.error_type, error=f.error_message,
            retry_in=round(float(f.extra.get("delay", 0.0)), 3),
        )


async def fire_dead(hooks: Sequence[Callable[..., Any]], dead: records.DeadLetter) -> None:
    """Call the app's ``on_dead`` hooks; nothing a hook raises stops the worker."""
    for hook in hooks:
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(dead)
            else:
                await asyncio.to_thread(hook, dead)
        except asyncio.CancelledError:
            if cancelling():
                raise
        except BaseException as exc:  # user code: nothing it raises stops the worker
            log.error(
                "hook.failed", hook=getattr(hook, "__name__", repr(hook)),
                execution_id=str(dead.execution_id), error=f"{type(exc).__name__}: {exc}",
            )


def cancelling() -> bool:
    """Whether the running task is being cancelled (by us), not hit by a stray CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
