"""Nothing a handler does stops the worker (issue 14), on SQLite and PostgreSQL.

- ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` and a stray ``CancelledError``
  raised by async and plain ``def`` handlers, hung and spinning handlers: each is a failed
  (or timed-out) attempt of its own execution; 20 healthy executions beside them succeed.
- A claim loop hit by an unexpected error logs it at error level and goes on; a worker that
  ends anyway is restarted, and ``/readyz`` says unready while no worker loop runs.
- Lost attempts (the process died) spend no budget; an execution lost before runs alone, so
  its neighbours are not lost with it again; one lost ``max_losses`` times is dead, named so.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from structlog.testing import capture_logs

from solo_os import App, Context, Retry, sources
from solo_os import store as store_mod
from solo_os.runtime import attempt as attempt_mod
from solo_os.runtime import worker as worker_mod
from tests import helpers


async def _post(h: helpers.Harness, kind: str, key: str) -> UUID:
    r = await h.post("billing", {"key": key}, event_type=kind, key=key)
    assert r.status_code == 200, r.text
    [x] = await h.store.list_executions(
        store_mod.Filters(limit=0), event_id=UUID(r.json()["event_id"])
    )
    xid: UUID = x.id
    return xid


async def _settled(h: helpers.Harness, ids: list[UUID]) -> bool:
    for xid in ids:
        x = await h.store.get_execution(xid)
        if x is None or x.status not in ("succeeded", "dead"):
            return False
    return True


def bad_app(release: threading.Event, ran: list[str]) -> App:
    app = App(service="safety-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))
    twice = Retry(max_attempts=2, base_delay=0.0)

    @app.on("billing", "healthy", retry=Retry(max_attempts=2, base_delay=0.0))
    async def healthy(event: Any, ctx: Context) -> None:
        await asyncio.sleep(0.05)
        ran.append(event["key"])

    @app.on("billing", "healthy_def", retry=Retry(max_attempts=2, base_delay=0.0))
    def healthy_def(event: Any, ctx: Context) -> None:
        time.sleep(0.05)
        ran.append(event["key"])

    raising: dict[str, type[BaseException]] = {
        "exit": SystemExit,
        "interrupt": KeyboardInterrupt,
        "genexit": GeneratorExit,
        "cancelled": asyncio.CancelledError,
    }
    for kind, exc in raising.items():

        async def async_raiser(event: Any, ctx: Context, exc: type[BaseException] = exc) -> None:
            raise exc(3) if exc is SystemExit else exc()

        def def_raiser(event: Any, ctx: Context, exc: type[BaseException] = exc) -> None:
            raise exc(3) if exc is SystemExit else exc()

        app.on("billing", f"{kind}_async", retry=twice, name=f"{kind}_async")(async_raiser)
        app.on("billing", f"{kind}_def", retry=twice, name=f"{kind}_def")(def_raiser)

    @app.on("billing", "hang", retry=twice, timeout=0.5)
    def hang(event: Any, ctx: Context) -> None:
        release.wait(60)

    @app.on("billing", "spin", retry=twice, timeout=0.5)
    def spin(event: Any, ctx: Context) -> None:
        # Spins three times past its timeout (a thread cannot be stopped): bounded only so
        # that the rest of the test suite does not share the CPU with it.
        deadline = time.monotonic() + 1.5
        while not release.is_set() and time.monotonic() < deadline:
            pass

    @app.on("billing", "long", timeout=30)
    async def long(event: Any, ctx: Context) -> None:
        await asyncio.sleep(4)

    @app.on("billing", "hang_async", retry=twice, timeout=0.5)
    async def hang_async(event: Any, ctx: Context) -> None:
        await asyncio.Event().wait()

    return app


BAD = [
    *(f"{k}_{m}" for k in ("exit", "interrupt", "genexit", "cancelled") for m in ("async", "def")),
    "hang",
    "spin",
    "hang_async",
]


async def test_base_exceptions_hangs_and_spins_fail_only_their_own_execution(
    database_url: str,
) -> None:
    release = threading.Event()
    ran: list[str] = []
    app = bad_app(release, ran)
    try:
        async with helpers.running(app, database_url, concurrency=16) as h:
            bad = {kind: await _post(h, kind, f"bad-{kind}") for kind in BAD}
            good = [
                await _post(h, "healthy" if i % 2 else "healthy_def", f"ok-{i}") for i in range(20)
            ]
            await helpers.eventually(lambda: _settled(h, [*good, *bad.values()]), timeout=30)
            assert h.runtime.unready() is None  # the worker loop is still running
            later = await _post(h, "healthy", "later")
            await helpers.eventually(lambda: _settled(h, [later]))
            goods = [await h.store.get_execution(x) for x in [*good, later]]
            outcomes = {
                kind: [(a.outcome, a.error_type) for a in await h.store.list_attempts(xid)]
                for kind, xid in bad.items()
            }
            dead = {kind: await h.store.get_execution(xid) for kind, xid in bad.items()}
    finally:
        release.set()
    assert all(x is not None and x.status == "succeeded" and x.attempts == 1 for x in goods)
    assert sorted(ran) == sorted([*(f"ok-{i}" for i in range(20)), "later"])
    expected_type = {
        "exit": "SystemExit", "interrupt": "KeyboardInterrupt",
        "genexit": "GeneratorExit", "cancelled": "CancelledError",
    }
    for kind in BAD:
        x = dead[kind]
        assert x is not None and x.status == "dead", (kind, x)
        if kind.startswith(("hang", "spin")):
            assert outcomes[kind] == [("timed_out", "TimeoutError")] * 2, (kind, outcomes[kind])
        else:
            name = expected_type[kind.rsplit("_", 1)[0]]
            assert outcomes[kind] == [("failed", name)] * 2, (kind, outcomes[kind])
            assert x.last_error is not None and x.last_error.startswith(name)


async def test_the_claim_loop_survives_an_unexpected_error_and_says_so(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    app = bad_app(threading.Event(), ran)
    calls = 0

    async with helpers.running(app, database_url, roles=("serve",)) as h:
        real_claim = h.store.claim

        async def flaky_claim(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise RecursionError("maximum recursion depth exceeded (a poison row)")
            return await real_claim(*args, **kwargs)

        monkeypatch.setattr(h.store, "claim", flaky_claim)
        xid = await _post(h, "healthy", "one")
        w = worker_mod.Worker(app, h.store, poll_interval=0.05)
        stop = asyncio.Event()
        with capture_logs() as logs:
            task = asyncio.create_task(w.run(stop))
            try:
                await helpers.eventually(lambda: _settled(h, [xid]), timeout=15)
            finally:
                stop.set()
                await task
    failures = [e for e in logs if e["event"] == "worker.loop_failed"]
    assert len(failures) == 2 and all(e["log_level"] == "error" for e in failures)
    assert ran == ["one"]


async def test_a_worker_that_ends_is_restarted_and_readyz_says_unready_meanwhile(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    app = bad_app(threading.Event(), ran)
    broken = asyncio.Event()
    real_loop = worker_mod.Worker._loop
    starts = 0

    async def loop_that_breaks_once(self: worker_mod.Worker, stop: asyncio.Event) -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            await broken.wait()
            raise RuntimeError("the loop broke")
        await real_loop(self, stop)

    monkeypatch.setattr(worker_mod.Worker, "_loop", loop_that_breaks_once)
    with capture_logs() as logs:
        async with helpers.running(app, database_url) as h:
            down = await h.client.get("/readyz")
            assert down.status_code == 503 and down.json()["worker"] == "not running"
            broken.set()
            await helpers.eventually(lambda: _ready(h), timeout=10)
            xid = await _post(h, "healthy", "after")
            await helpers.eventually(lambda: _settled(h, [xid]))
    crashed = [e for e in logs if e["event"] == "worker.crashed"]
    assert len(crashed) == 1 and crashed[0]["log_level"] == "error"
    assert starts == 2 and ran == ["after"]


async def _ready(h: helpers.Harness) -> bool:
    return (await h.client.get("/readyz")).status_code == 200


async def test_lost_attempts_spend_no_budget_and_run_alone_then_poison_goes_dead(
    database_url: str,
) -> None:
    running = 0
    most = 0

    app = App(service="lost-test")
    app.source("billing", sources.hmac(secret_env="BILLING_WEBHOOK_SECRET"))

    @app.on("billing", "healthy", retry=Retry(max_attempts=1, base_delay=0.0))
    async def healthy(event: Any, ctx: Context) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1

    async with helpers.running(app, database_url, roles=("serve",)) as h:
        ids = [await _post(h, "healthy", f"k{i}") for i in range(6)]
        now = store_mod.utcnow()
        # A process claims all six (a budget of one attempt each) and dies: its lease (none
        # here) has run out when the reaper looks.
        assert len(await h.store.claim("ghost:1", 10, now, 0.0)) == 6
        reaped = await h.store.reap(store_mod.utcnow(), max_losses=3)
        assert sorted(r.execution_id for r in reaped) == sorted(ids)
        assert {(r.status, r.losses) for r in reaped} == {("pending", 1)}
        xs = [await h.store.get_execution(x) for x in ids]
        assert all(x is not None and (x.status, x.max_attempts) == ("pending", 2) for x in xs)
        # They are not handed out with other work, one at a time only.
        later = store_mod.utcnow()
        assert await h.store.claim("w:2", 10, later, 30, lost=False) == []
        assert await h.store.lost_due(later)

        w = worker_mod.Worker(app, h.store, poll_interval=0.05, concurrency=8)
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        try:
            await helpers.eventually(lambda: _settled(h, ids), timeout=15)
        finally:
            stop.set()
            await task
        outcomes = {
            tuple(a.outcome for a in await h.store.list_attempts(xid)) for xid in ids
        }
        assert outcomes == {("lost", "succeeded")}
        assert most == 1  # each ran alone: a poison among them could not take others down

        # One that is lost every time it runs is dead after max_losses losses, named so.
        poison = await _post(h, "healthy", "poison")
        at = later
        for n in range(1, 4):
            at += timedelta(seconds=5)
            [c] = await h.store.claim(f"victim:{n}", 1, at, 1.0, lost=n > 1)
            assert c.id == poison and c.losses == n - 1
            [r] = await h.store.reap(at + timedelta(seconds=2), max_losses=3)
            assert r.losses == n and r.status == ("dead" if n == 3 else "pending")
        x = await h.store.get_execution(poison)
        attempts = await h.store.list_attempts(poison)
    assert x is not None and x.status == "dead" and x.attempts == 3
    assert x.last_error is not None and "lost 3 times" in x.last_error
    assert [a.outcome for a in attempts] == ["lost"] * 3
    assert "lost 3 times" in (attempts[-1].error_message or "")


async def test_an_error_escaping_the_worker_s_own_code_frees_the_slot_and_is_retried(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    app = bad_app(threading.Event(), ran)
    real_finished = attempt_mod.finished  # the worker builds each attempt's outcome with it
    broke = 0

    def finished_that_breaks_once(*args: Any) -> Any:
        nonlocal broke
        if broke == 0:
            broke += 1
            raise RuntimeError("a bug in the worker, not in the handler")
        return real_finished(*args)

    monkeypatch.setattr(attempt_mod, "finished", finished_that_breaks_once)
    with capture_logs() as logs:
        async with helpers.running(app, database_url, concurrency=2, lease_seconds=1.0) as h:
            busy = await _post(h, "long", "busy")  # keeps the worker's heartbeat going
            await helpers.eventually(lambda: _running(h, busy))
            first = await _post(h, "healthy", "first")
            second = await _post(h, "healthy", "second")

            async def taken_back() -> bool:
                for x in (first, second):
                    if any(a.outcome == "lost" for a in await h.store.list_attempts(x)):
                        return True
                return False

            await helpers.eventually(taken_back, timeout=10)
            # Taken back while the worker is still busy: its lease was not renewed with the
            # lease of what the worker does run.
            still_busy = await _running(h, busy)
            await helpers.eventually(lambda: _settled(h, [first, second]), timeout=20)
            outcomes = {
                str(x): [a.outcome for a in await h.store.list_attempts(x)] for x in (first, second)
            }
    crashed = [e for e in logs if e["event"] == "execution.crashed"]
    assert len(crashed) == 1 and crashed[0]["log_level"] == "error"
    victim = crashed[0]["execution_id"]
    other = next(x for x in outcomes if x != victim)
    # The slot (concurrency 1) was freed: the other one ran; the victim's lease ran out, it
    # was taken back as lost (no budget spent) and ran again alone.
    assert outcomes[victim] == ["lost", "succeeded"]
    assert outcomes[other] == ["succeeded"]
    assert still_busy
    assert sorted(ran) == ["first", "first", "second"] or sorted(ran) == ["first", "second", "second"]


async def _running(h: helpers.Harness, xid: UUID) -> bool:
    x = await h.store.get_execution(xid)
    return x is not None and x.status == "running"


async def test_a_worker_process_answers_readyz_on_its_metrics_port(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = bad_app(threading.Event(), [])
    broken = asyncio.Event()
    real_loop = worker_mod.Worker._loop
    starts = 0

    async def loop_that_breaks_once(self: worker_mod.Worker, stop: asyncio.Event) -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            await broken.wait()
            raise RuntimeError("the loop broke")
        await real_loop(self, stop)

    monkeypatch.setattr(worker_mod.Worker, "_loop", loop_that_breaks_once)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = {"SOLO_OS_METRICS_PORT": port, "SOLO_OS_METRICS_HOST": "127.0.0.1"}
    async with (
        helpers.running(app, database_url, roles=("worker",), settings=settings),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as own,
    ):
        down = await own.get("/readyz")
        assert down.status_code == 503 and down.json() == {
            "status": "unavailable", "worker": "not running"
        }
        broken.set()

        async def ready() -> bool:
            return (await own.get("/readyz")).status_code == 200

        # The restart itself waits 0.5 s; the bound is for a machine loaded by other test
        # runs (10 s once ran out while three suites shared two cores).
        await helpers.eventually(ready, timeout=30)
        assert (await own.get("/metrics")).status_code == 200
