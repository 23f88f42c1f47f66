"""Retries, dead letters, replay, timeouts, leases and durable steps (SPEC sections 1 and 4)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from solo_os import App, Context, NonRetryable, Retry, RetryAfter, sources, testing
from solo_os import store as store_mod
from solo_os.core import records
from solo_os.runtime import worker as worker_mod
from tests import helpers


def job_app(
    fn: Any, *, retry: Retry | None = None, timeout: float = 30.0, name: str = "job"
) -> App:
    app = App(service="retry-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    policy = retry or Retry(max_attempts=3, base_delay=0.0)
    app.on("billing", "job", retry=policy, timeout=timeout, name=name)(fn)
    return app


async def _one(h: helpers.Harness, key: str = "k", payload: Any = None) -> UUID:
    r = await h.post("billing", payload or {"n": key}, event_type="job", key=key)
    assert r.status_code == 200, r.text
    xs = await h.store.list_executions(store_mod.Filters(limit=0), event_id=UUID(r.json()["event_id"]))
    assert len(xs) == 1
    return xs[0].id


async def _status(h: helpers.Harness, xid: UUID, status: str) -> bool:
    x = await h.store.get_execution(xid)
    return x is not None and x.status == status


async def test_fails_twice_then_succeeds_with_delays_inside_the_policy(database_url: str) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if ctx.attempt < 3:
            raise ConnectionError(f"transient {ctx.attempt}")

    policy = Retry(max_attempts=5, base_delay=0.3, max_delay=0.5, jitter=False)
    async with testing.run(job_app(job, retry=policy), database_url=database_url) as solo:
        posted = await solo.client.send("billing", "job", {"n": "k"})
        assert posted.status == "accepted"
        await solo.advance(seconds=5)  # the test clock runs each retry at its own time
        [x] = await solo.executions()
        attempts = await solo.attempts(x)
    assert x.status == "succeeded" and x.attempts == 3 and x.last_error is None
    assert [a.outcome for a in attempts] == ["failed", "failed", "succeeded"]
    assert attempts[0].error_type == "ConnectionError" and "transient 1" in (attempts[0].error_message or "")
    assert attempts[0].traceback and "ConnectionError" in attempts[0].traceback
    # without jitter the delay is exactly the ceiling: 0.3 s, then min(0.6, 0.5) = 0.5 s
    gaps = [(b.started_at - a.ended_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps == [0.3, 0.5]


async def test_full_jitter_keeps_every_delay_under_the_ceiling(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if ctx.attempt < 4:
            raise ValueError("again")

    # Every jitter draw at the top of its range: the delay is the ceiling itself, so a
    # missing max_delay cap (0.8 s after the third attempt) fails the exact comparison.
    monkeypatch.setattr(random.Random, "uniform", lambda self, a, b: b)
    policy = Retry(max_attempts=4, base_delay=0.2, max_delay=0.4, jitter=True)
    async with testing.run(job_app(job, retry=policy), database_url=database_url) as solo:
        await solo.client.send("billing", "job", {"n": "k"})
        await solo.advance(seconds=5)
        [x] = await solo.executions()
        attempts = await solo.attempts(x)
    assert x.status == "succeeded"
    gaps = [(b.started_at - a.ended_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps == [0.2, 0.4, 0.4]


async def test_exhausted_goes_dead_fires_the_hook_once_and_replay_succeeds(
    database_url: str,
) -> None:
    healthy = False
    dead: list[records.DeadLetter] = []

    async def job(event: dict[str, Any], ctx: Context) -> None:
        if not healthy:
            raise RuntimeError("provider down")

    app = job_app(job, retry=Retry(max_attempts=2, base_delay=0.0))
    app.on_dead(dead.append)
    async with testing.run(app, database_url=database_url) as solo:
        await solo.client.send("billing", "job", {"n": "k"})
        assert await solo.drain() == 2  # both attempts, then nothing more is due
        [x] = await solo.dead_letters()
        xid = x.id
        assert x.attempts == 2
        assert x.last_error == "RuntimeError: provider down"
        assert [d.execution_id for d in dead] == [xid]
        assert dead[0].error_type == "RuntimeError" and dead[0].source == "billing"
        healthy = True
        replayed = await solo.store.replay([xid], {"job": 2}, 3, solo.clock())
        assert replayed == [xid]
        assert await solo.drain() == 1
        attempts = await solo.attempts(xid)
        [x] = await solo.executions()
    assert [a.outcome for a in attempts] == ["failed", "failed", "succeeded"]  # history kept
    assert x.status == "succeeded" and x.max_attempts == 4  # a fresh budget on top of the 2 spent
    assert len(dead) == 1


async def test_replaying_an_execution_that_is_not_dead_changes_nothing(database_url: str) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        return None

    async with helpers.running(job_app(job), database_url) as h:
        xid = await _one(h)
        await helpers.eventually(lambda: _status(h, xid, "succeeded"))
        assert await h.store.replay([xid], {}, 3, store_mod.utcnow()) == []
        assert await _status(h, xid, "succeeded")


async def test_non_retryable_goes_dead_at_once(database_url: str) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        raise NonRetryable("card declined")

    async with helpers.running(job_app(job, retry=Retry(max_attempts=5)), database_url) as h:
        xid = await _one(h)
        await helpers.eventually(lambda: _status(h, xid, "dead"))
        x = await h.store.get_execution(xid)
    assert x is not None and x.attempts == 1 and "card declined" in (x.last_error or "")


async def test_retry_after_defers_without_logging_a_crash(database_url: str) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if ctx.attempt == 1:
            raise RetryAfter(0.5, "rate limited")

    async with testing.run(job_app(job), database_url=database_url) as solo:
        await solo.client.send("billing", "job", {"n": "k"})
        assert await solo.drain() == 1
        [x] = await solo.executions()
        assert x.status == "pending"  # waits for the test clock, not the wall clock
        assert await solo.advance(seconds=0.499) == 0
        assert await solo.advance(seconds=0.001) == 1
        [x] = await solo.executions()
        attempts = await solo.attempts(x)
        names = [e["event"] for e in solo.logs()]
    assert x.status == "succeeded"
    gap = (attempts[1].started_at - attempts[0].ended_at).total_seconds()
    assert gap == 0.5
    assert attempts[0].traceback is None
    assert "execution.deferred" in names
    assert "execution.failed" not in names and "execution.dead" not in names


async def test_timeout_is_a_failed_attempt(database_url: str) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if ctx.attempt == 1:
            await asyncio.sleep(30)

    async with helpers.running(job_app(job, timeout=0.3), database_url) as h:
        xid = await _one(h)
        await helpers.eventually(lambda: _status(h, xid, "succeeded"))
        attempts = await h.store.list_attempts(xid)
    assert [a.outcome for a in attempts] == ["timed_out", "succeeded"]
    assert "timed out after 0.3s" in (attempts[0].error_message or "")


async def test_sync_handler_timeout_is_a_failed_attempt(database_url: str) -> None:
    import time

    def job(event: dict[str, Any], ctx: Context) -> None:
        if ctx.attempt == 1:
            time.sleep(1.0)

    async with helpers.running(job_app(job, timeout=0.2), database_url) as h:
        xid = await _one(h)
        await helpers.eventually(lambda: _status(h, xid, "succeeded"))
        attempts = await h.store.list_attempts(xid)
    assert attempts[0].outcome == "timed_out"


async def test_a_durable_step_is_not_repeated_by_a_later_attempt(database_url: str) -> None:
    effects: collections.Counter[str] = collections.Counter()
    results: list[Any] = []

    def charge(amount: int) -> dict[str, Any]:
        effects["charge"] += 1
        return {"charge_id": f"ch_{effects['charge']}", "amount": amount}

    async def job(event: dict[str, Any], ctx: Context) -> None:
        got = await ctx.step("charge", charge, 4900)
        results.append(got)
        if ctx.attempt < 3:
            raise ConnectionError("email provider down")

    async with helpers.running(job_app(job), database_url) as h:
        xid = await _one(h)
        await helpers.eventually(lambda: _status(h, xid, "succeeded"))
        steps = await h.store.load_steps(xid)
    assert effects["charge"] == 1
    assert results == [{"charge_id": "ch_1", "amount": 4900}] * 3
    assert steps == {"charge": {"charge_id": "ch_1", "amount": 4900}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("dup", "used twice"),
        ("notjson", "not JSON"),
        ("failing", "card network"),
    ],
)
async def test_step_misuse_and_failures(database_url: str, body: str, message: str) -> None:
    async def job(event: dict[str, Any], ctx: Context) -> None:
        if body == "dup":
            await ctx.step("a", lambda: 1)
            await ctx.step("a", lambda: 2)
        elif body == "notjson":
            await ctx.step("a", lambda: object())
        else:
            async def boom() -> None:
                raise ConnectionError("card network")

            await ctx.step("a", boom)

    async with helpers.running(job_app(job, retry=Retry(max_attempts=2, base_delay=0)), database_url) as h:
        xid = await _one(h)
        await helpers.eventually(lambda: _status(h, xid, "dead"))
        x = await h.store.get_execution(xid)
    assert x is not None and message in (x.last_error or "")
    # misuse cannot be fixed by retrying: dead after one attempt; a failing step is retried
    assert x.attempts == (2 if body == "failing" else 1)


async def test_expired_lease_is_taken_back_and_the_lost_attempt_recorded(database_url: str) -> None:
    ran: list[int] = []

    async def job(event: dict[str, Any], ctx: Context) -> None:
        ran.append(ctx.attempt)

    app = job_app(job)
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        xid = await _one(h)
        # a worker that claims and then dies: its lease (30 s of test time) is never renewed
        clock = testing.Clock()
        claimed = await h.store.claim("ghost:1", 10, clock(), 30.0)
        assert [c.id for c in claimed] == [xid]
        clock.advance(31)  # the lease has expired: the new worker's first reap takes it back
        w = worker_mod.Worker(app, h.store, poll_interval=0.05, clock=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        try:
            await helpers.eventually(lambda: _status(h, xid, "succeeded"), timeout=15)
        finally:
            stop.set()
            await task
        attempts = await h.store.list_attempts(xid)
    assert [(a.attempt, a.outcome, a.worker_id) for a in attempts] == [
        (1, "lost", "ghost:1"),
        (2, "succeeded", w.worker_id),
    ]
    assert ran == [2]


async def test_a_late_outcome_from_a_lost_lease_does_not_overwrite(database_url: str) -> None:
    async with helpers.running(job_app(lambda e, c: None), database_url, roles=("serve",)) as h:
        xid = await _one(h)
        now = store_mod.utcnow()
        [c] = await h.store.claim("slow:1", 1, now, 0.5)
        reaped = await h.store.reap(now + timedelta(seconds=1))
        assert [r.execution_id for r in reaped] == [xid]
        [c2] = await h.store.claim("fast:2", 1, now + timedelta(seconds=1), 30)
        late = records.Finished(xid, c.attempt, now, store_mod.utcnow(), "succeeded", "succeeded")
        assert await h.store.finish("slow:1", [late]) == []
        x = await h.store.get_execution(xid)
        assert x is not None and x.status == "running" and x.attempts == 2
        ok = records.Finished(xid, c2.attempt, now, store_mod.utcnow(), "succeeded", "succeeded")
        assert await h.store.finish("fast:2", [ok]) == [ok]


async def test_graceful_shutdown_releases_leases_without_spending_an_attempt(
    database_url: str,
) -> None:
    started = asyncio.Event()

    async def job(event: dict[str, Any], ctx: Context) -> None:
        started.set()
        await asyncio.sleep(60)

    app = job_app(job)
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        xid = await _one(h)
        w = worker_mod.Worker(app, h.store, poll_interval=0.05, shutdown_grace=0.1)
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        await asyncio.wait_for(started.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        x = await h.store.get_execution(xid)
        attempts = await h.store.list_attempts(xid)
    # the interrupted attempt is on record, and its budget was given back
    assert x is not None and x.status == "pending" and x.attempts == 1 and x.max_attempts == 4
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "interrupted")]


async def test_a_handler_that_no_longer_exists_is_retried_then_dead(database_url: str) -> None:
    app = job_app(lambda e, c: None, retry=Retry(max_attempts=2, base_delay=0))
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        xid = await _one(h)
    other = job_app(lambda e, c: None, name="renamed")
    async with helpers.running(other, database_url) as h:
        await helpers.eventually(lambda: _status(h, xid, "dead"))
        x = await h.store.get_execution(xid)
    assert x is not None and "UnknownHandler" in (x.last_error or "")
