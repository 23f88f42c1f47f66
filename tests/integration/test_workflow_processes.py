"""Durable workflows across real processes (SQLite and PostgreSQL): a sleep survives a
``kill -9`` of ``solo-os run`` and holds no worker slot; two worker processes never resume one
waiter twice; a wait's registration racing an ingest of its event never misses it."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from solo_os import store as store_mod
from solo_os.core import ids, records
from solo_os.store import _workflow
from tests import helpers
from tests.apps import workflow_app
from tests.chaos import _support

APP = str(Path(workflow_app.__file__))


def ledger(path: Path) -> list[tuple[str, str, str, int]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=60)
    try:
        return [tuple(r) for r in conn.execute("SELECT kind, execution_id, detail, pid FROM ledger")]  # type: ignore[misc]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def _post(base: str, kind: str, payload: dict[str, Any], key: str) -> UUID:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await _support.post(client, base, key, payload, event_type=kind)
    assert r.status_code == 200, r.text
    return UUID(r.json()["event_id"])


async def _until(check: Any, timeout: float, procs: _support.Procs) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time\n" + procs.logs())
        await asyncio.sleep(0.1)


async def test_sleep_across_kill_9_of_run_completes_once_and_holds_no_slot(
    database_url: str, tmp_path: Path
) -> None:
    book = tmp_path / "ledger.db"
    env = _support.env_for(
        database_url, LEDGER_DB=str(book), NAP_SECONDS="4", SOLO_OS_WORKER_CONCURRENCY="1",
        SOLO_OS_POLL_INTERVAL="0.1",
    )
    store = store_mod.connect(database_url)
    port = _support.free_port()
    base = f"http://127.0.0.1:{port}"
    run = [_support.SOLO_OS, "run", APP, "--port", str(port)]
    try:
        with _support.processes(tmp_path) as procs:
            first = procs.start(run, env, "run")
            _support.wait_ready(base, first)
            event_id = await _post(base, "trial.started", {"user": "u1"}, "trial-1")

            async def waiting() -> bool:
                xs = await store.list_executions(store_mod.Filters(limit=0), event_id=event_id)
                return bool(xs) and xs[0].status == "waiting"

            await _until(waiting, 30, procs)
            # Concurrency 1 and the trial sleeping: other work still runs.
            await _post(base, "ping", {"n": 1}, "ping-1")
            await _until(lambda: _has(book, "ping"), 10, procs)
            assert not [r for r in ledger(book) if r[0] == "after"]
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            second = procs.start(run, env, "run")
            _support.wait_ready(base, second)
            async def succeeded() -> bool:
                xs = await store.list_executions(store_mod.Filters(limit=0), event_id=event_id)
                return xs[0].status == "succeeded"

            await _until(succeeded, 30, procs)
            [x] = await store.list_executions(store_mod.Filters(limit=0), event_id=event_id)
            attempts = await store.list_attempts(x.id)
    finally:
        await store.close()
    rows = ledger(book)
    assert [r[0] for r in rows if r[1] == str(x.id)] == ["before", "after"]  # each once
    assert x.status == "succeeded" and x.result == "done"
    assert [a.outcome for a in attempts] == ["suspended", "succeeded"]


async def _has(book: Path, kind: str) -> bool:
    return any(r[0] == kind for r in ledger(book))


async def test_two_worker_processes_never_resume_one_waiter_twice(
    database_url: str, tmp_path: Path
) -> None:
    book = tmp_path / "ledger.db"
    env = _support.env_for(database_url, LEDGER_DB=str(book), SOLO_OS_POLL_INTERVAL="0.1")
    store = store_mod.connect(database_url)
    orders = [f"o{i}" for i in range(40)]
    try:
        with _support.processes(tmp_path) as procs:
            _, base = procs.serve(APP, env)
            for _ in range(2):
                procs.worker(APP, env)
            for order in orders:
                await _post(base, "checkout", {"order": order}, f"c-{order}")

            async def all_waiting() -> bool:
                return (await store.counts()).get("waiting", 0) == len(orders)

            await _until(all_waiting, 60, procs)
            # Two matching payments per order, sent concurrently: one resumption each.
            await asyncio.gather(*(
                _post(base, "payment", {"order": order, "n": n}, f"p-{order}-{n}")
                for order in orders for n in (1, 2)
            ))

            async def all_done() -> bool:
                return (await store.counts()).get("succeeded", 0) == len(orders)

            await _until(all_done, 60, procs)
            await asyncio.sleep(1.0)  # time for a second, wrong resumption to show
    finally:
        await store.close()
    resumed = [r for r in ledger(book) if r[0] == "resumed"]
    assert len(resumed) == len(orders) and len({r[1] for r in resumed}) == len(orders)
    assert {r[2] for r in resumed} <= {"1", "2"}


async def test_a_wait_registered_while_its_event_is_ingested_is_never_missed(
    database_url: str,
) -> None:
    """The race the wait lock closes: the worker registers a wait while an ingest transaction
    stores a matching event; whichever commits first, the wait ends up with the event."""
    store = store_mod.connect(database_url)
    n = 60
    now = store_mod.utcnow()
    try:
        triggers = [_event("billing", "checkout", {"order": f"r{i}"}, now, handler="checkout")
                    for i in range(n)]
        await store.ingest(triggers)
        claimed = await store.claim("w", n, now, 60)
        assert len(claimed) == n
        for round_ in range(n):
            c = claimed[round_]
            order = f"r{round_}"
            at = store_mod.utcnow()
            s = _workflow.Suspension(
                execution_id=c.id, attempt=c.attempt, name="payment", kind="wait",
                started_at=at, wake_at=None, source="billing", type="payment",
                match={"order": order},
            )
            payment = _event("billing", "payment", {"order": order}, at)
            first, second = (store.workflow.suspend(s, at), store.ingest([payment]))
            pair = (first, second) if round_ % 2 else (second, first)
            await asyncio.gather(*pair)
        calls = [(await store.workflow.load_calls(c.id))["payment"] for c in claimed]
    finally:
        await store.close()
    assert [c.status for c in calls] == ["done"] * n
    assert all(c.result and c.result["order"] == f"r{i}" for i, c in enumerate(calls))


def _event(
    source: str, kind: str, data: dict[str, Any], at: Any, handler: str | None = None
) -> records.NewEvent:
    import json

    text = json.dumps(data)
    return records.NewEvent(
        id=ids.uuid7(), source=source, idempotency_key=str(ids.uuid7()), type=kind,
        status="accepted", payload=text, body=text.encode(), headers={}, errors=None,
        correlation_id="c", received_at=at,
        executions=(records.NewExecution(ids.uuid7(), handler, 3),) if handler else (),
    )


_ = helpers  # the shared secret comes from tests.helpers through _support.env_for
