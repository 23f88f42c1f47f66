"""``ctx.event``, ``ctx.http`` and the workflow calls are made on first use (issue 21): a handler
that uses none of them pays for none, and one that uses them gets what it got before.

Two executions of one handler run on a worker with a queue double: the first uses nothing of
``ctx``, the second reads ``ctx.event``, ``ctx.http`` (twice: one session) and runs a step
(a step boundary asks the workflow calls whether to stop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import pytest

from solo_os import App, Context, config, sources
from solo_os.core import records
from solo_os.runtime import worker as worker_mod
from solo_os.runtime import workflow
from tests.unit._queue_double import QuietQueue, due_jobs


class Timers:
    """The workflow port as the worker's wake loop sees it: nothing ever waits."""

    async def wake_due(self, now: datetime) -> int:
        return 0

    async def next_wake(self) -> datetime | None:
        return None

    async def wait_for_timers(self, upcoming: datetime | None, timeout: float) -> None:
        await asyncio.sleep(timeout)


class Queue(QuietQueue):
    def __init__(self) -> None:
        self.finished: list[records.Finished] = []
        self.steps: dict[str, str] = {}
        self.workflow = Timers()  # asked nothing at a step: the handler has no cancel_on
        super().__init__(due_jobs(2))

    async def finish(self, worker_id: str, results: Sequence[records.Finished]) -> list[records.Finished]:
        self.finished += results
        return list(results)

    async def load_steps(self, execution_id: uuid.UUID) -> dict[str, Any]:
        return {}

    async def save_step(self, execution_id: uuid.UUID, name: str, text: str, attempt: int) -> None:
        self.steps[name] = text


async def test_ctx_pieces_are_made_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[workflow.Workflow | None] = []
    real = workflow.for_attempt

    def counted(*args: Any, **kw: Any) -> workflow.Workflow | None:
        made.append(real(*args, **kw))
        return made[-1]

    monkeypatch.setattr(workflow, "for_attempt", counted)
    seen: dict[int, dict[str, Any]] = {}
    app = App(service="lazy", settings=config.Settings(DATABASE_URL="sqlite:///unused.db"))  # type: ignore[call-arg]
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "job", name="job")
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if event["n"] == 1:
            return
        session = ctx.http
        assert ctx.http is session  # made once per attempt
        seen[2] = {
            "session": (session.execution_id, session.correlation_id),
            "event": ctx.event,
            "step": await ctx.step("s", lambda: 7),
        }

    queue = Queue()
    w = worker_mod.Worker(app, cast(Any, queue), concurrency=1, poll_interval=0.01)
    sessions: list[uuid.UUID] = []
    real_session = w.http.session

    def session(**kw: Any) -> Any:
        sessions.append(kw["execution_id"])
        return real_session(**kw)

    monkeypatch.setattr(w.http, "session", session)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        async with asyncio.timeout(5):
            while len(queue.finished) < 2:
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [f.next_status for f in queue.finished] == ["succeeded", "succeeded"]
    second = uuid.UUID(int=2)
    assert sessions == [second]  # the first execution made no HTTP session
    assert seen[2]["session"] == (second, "c2")
    event = seen[2]["event"]
    assert (event.id, event.source, event.type, event.idempotency_key) == (
        uuid.UUID(int=1002),
        "billing",
        "job",
        "k2",
    )
    assert seen[2]["step"] == 7 and queue.steps == {"s": "7"}
    # The workflow calls: made once, for the execution that reached a step boundary, and
    # started when its attempt started.
    assert len(made) == 1 and made[0] is not None
    assert made[0].execution_id == second
    assert made[0].started_at == queue.finished[1].started_at
