"""What a handler receives beside its event: ids, a bound logger, and durable steps."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from solo_os import errors
from solo_os.observability import tracing
from solo_os.outbound import http as http_mod
from solo_os.runtime import capture as _capture

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
    """One attempt of one execution, as its handler sees it."""

    def __init__(
        self,
        *,
        execution_id: UUID,
        attempt: int,
        max_attempts: int,
        correlation_id: str,
        handler: str,
        event: EventMeta | None,
        log: Any,
        steps: ports.StepPort | None = None,
        scheduled_at: datetime | None = None,
        http: http_mod.Session | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.correlation_id = correlation_id
        self.handler = handler
        self.event = event
        self.log = _capture.recording(log)  # also kept per attempt for the dashboard
        self.scheduled_at = scheduled_at
        self._steps = steps
        self._done: dict[str, Any] | None = None
        self._used: set[str] = set()
        self._http = http

    @property
    def http(self) -> http_mod.Session:
        """The outbound HTTP client (``await ctx.http.post(...)``; ``ctx.http.sync`` in plain
        handlers): rate-limited, retried, with idempotency keys and the correlation id."""
        if self._http is None:
            raise errors.SoloOSError("ctx.http needs a worker (this context was built without one)")
        return self._http

    def __repr__(self) -> str:
        return f"<Context {self.handler} execution={self.execution_id} attempt={self.attempt}>"

    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once per execution and return its JSON result.

        The result is stored as soon as ``fn`` returns; a later attempt of this execution gets
        the stored result back and ``fn`` is not called again. ``fn`` may be plain (run off the
        event loop) or async. Its result must be JSON-serializable.
        """
        if not name or len(name) > 255:
            raise errors.StepError("a step needs a name of 1 to 255 characters")
        if name in self._used:
            raise errors.StepError(
                f"step {name!r} is used twice in one execution; give each step its own name"
            )
        self._used.add(name)
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
