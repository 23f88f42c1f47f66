"""What a handler receives beside its event: ids, a bound logger, and durable steps."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from solo_os import errors
from solo_os.observability import tracing
from solo_os.outbound import http as http_mod
from solo_os.runtime import capture as _capture
from solo_os.runtime import workflow as _workflow

if TYPE_CHECKING:  # the store is not loaded with a handler's context
    from solo_os.store import ports


@dataclass(frozen=True)
class EventMeta:
    """The delivery an execution stands for."""

    id: UUID
    source: str
    type: str
    idempotency_key: str
    received_at: datetime
    headers: dict[str, str]


flush_logs = _capture.flush  # the worker calls it when an attempt ends


class Context:
    """One attempt of one execution, as its handler sees it.

    ``event``, ``http`` and ``workflow`` may each be given as a function that makes it: it is
    then called on first use, once, and never for a handler that does not use it (the worker
    builds them so: most handlers use neither the HTTP client nor a workflow call).
    """

    def __init__(
        self,
        *,
        execution_id: UUID,
        attempt: int,
        max_attempts: int,
        correlation_id: str,
        handler: str,
        event: EventMeta | Callable[[], EventMeta | None] | None,
        log: Any,
        steps: ports.StepPort | None = None,
        scheduled_at: datetime | None = None,
        http: http_mod.Session | Callable[[], http_mod.Session] | None = None,
        workflow: _workflow.Workflow | Callable[[], _workflow.Workflow | None] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.correlation_id = correlation_id
        self.handler = handler
        self._event = event
        self.log = _capture.recording(log)  # also kept per attempt for the dashboard
        self.scheduled_at = scheduled_at
        self._steps = steps
        self._done: dict[str, Any] | None = None
        self._used: set[str] = set()
        self._http = http
        self._workflow = workflow

    @property
    def event(self) -> EventMeta | None:
        """The event that started the execution (None for a scheduled run)."""
        if callable(self._event):
            self._event = self._event()
        return self._event

    @property
    def http(self) -> http_mod.Session:
        """The outbound HTTP client (``await ctx.http.post(...)``; ``ctx.http.sync`` in plain
        handlers): rate-limited, retried, with idempotency keys and the correlation id."""
        if self._http is None:
            raise errors.SoloOSError("ctx.http needs a worker (this context was built without one)")
        if not isinstance(self._http, http_mod.Session):
            self._http = self._http()
        return self._http

    def _workflow_calls(self) -> _workflow.Workflow | None:
        if self._workflow is not None and not isinstance(self._workflow, _workflow.Workflow):
            self._workflow = self._workflow()
        return self._workflow

    def __repr__(self) -> str:
        return f"<Context {self.handler} execution={self.execution_id} attempt={self.attempt}>"

    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once per execution and return its JSON result.

        The result is stored as soon as ``fn`` returns; a later attempt of this execution gets
        the stored result back and ``fn`` is not called again. ``fn`` may be plain (run off the
        event loop) or async. Its result must be JSON-serializable.
        """
        await self._use(name)
        if self._steps is None:
            raise errors.StepError("durable steps need a store (this context has none)")
        if self._done is None:
            self._done = await self._steps.load_steps(self.execution_id)
        if name in self._done:
            self.log.debug("step.replayed", step=name)
            return self._done[name]
        in_step = http_mod.STEP.set(name)  # ctx.http derives idempotency keys per step
        try:
            with tracing.span(f"step {name}", attributes={"solo_os.step": name}):
                if inspect.iscoroutinefunction(fn):
                    result = await fn(*args, **kwargs)
                else:
                    result = await asyncio.to_thread(fn, *args, **kwargs)
        finally:
            http_mod.STEP.reset(in_step)
        try:
            text = json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise errors.StepError(f"step {name!r} returned a value that is not JSON: {exc}") from None
        # Once fn has returned, its effect happened: record it even if this attempt is being
        # cancelled (graceful shutdown), or the next attempt would run fn a second time.
        await asyncio.shield(self._steps.save_step(self.execution_id, name, text, self.attempt))
        self.log.debug("step.completed", step=name)
        stored = json.loads(text)
        self._done[name] = stored
        return stored

    async def _use(self, name: str) -> None:
        """A step boundary: the name is new in this run, and no ``cancel_on`` event stopped us."""
        if not isinstance(name, str) or not name or len(name) > 255:
            raise errors.StepError("a step needs a name of 1 to 255 characters")
        if name in self._used:
            raise errors.StepError(
                f"step {name!r} is used twice in one execution; give each step its own name"
            )
        self._used.add(name)
        if (calls := self._workflow_calls()) is not None:
            await calls.check_cancel()

    def _flow(self) -> _workflow.Workflow:
        if (calls := self._workflow_calls()) is None:
            raise errors.StepError("durable workflows need a worker (this context has none)")
        return calls

    async def sleep(self, name: str, duration: timedelta | float) -> None:
        """Suspend this execution for ``duration`` (a timedelta or seconds): it holds no worker
        slot and spends no attempt, and resumes on any worker, also across restarts."""
        await self._use(name)
        flow = self._flow()
        delta = _workflow.seconds(duration, "sleep's duration") or timedelta(0)
        # On a re-run the stored wake time counts, not this run's clock plus the duration.
        await flow.sleep_until(name, flow.clock() + delta)

    async def sleep_until(self, name: str, when: datetime) -> None:
        """Suspend this execution until ``when`` (an aware datetime)."""
        await self._use(name)
        await self._flow().sleep_until(name, when)

    async def wait_for_event(
        self,
        name: str,
        source: str,
        type: str,
        match: dict[str, Any] | None = None,
        timeout: timedelta | float | None = None,
    ) -> Any:
        """Suspend until an event of ``source``/``type`` whose payload has every dotted
        ``path: value`` of ``match`` is accepted (since this execution was created), and return
        its payload; None after ``timeout``."""
        await self._use(name)
        return await self._flow().wait_for_event(
            name, source, type, match, _workflow.seconds(timeout, "timeout")
        )

    async def send(self, name: str, type: str, data: Any, source: str = "internal") -> UUID:
        """Store a new event (once, even across retries) and return its id; the handlers of
        ``(source, type)`` run for it."""
        await self._use(name)
        return await self._flow().send(name, type, data, source)

    async def invoke(
        self, name: str, handler: Callable[..., Any] | str, data: Any,
        timeout: timedelta | float | None = None,
    ) -> Any:
        """Run ``handler`` (a function or a name) as a child execution with ``data`` and
        return its return value; ``InvokeError`` when it ends dead or cancelled (or times out)."""
        await self._use(name)
        return await self._flow().invoke(name, handler, data, _workflow.seconds(timeout, "timeout"))
