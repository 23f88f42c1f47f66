"""Several worker processes against one PostgreSQL: exactly once, leases, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from solo_os import store as store_mod
from tests import helpers
from tests.apps import ledger_app

APP = str(Path(ledger_app.__file__))
SOLO_OS = str(Path(sys.executable).parent / "solo-os")


def _env(database_url: str, ledger: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        BILLING_WEBHOOK_SECRET=helpers.SECRET,
        LEDGER_DB=str(ledger),
        LOG_LEVEL="warn",
        SOLO_OS_POLL_INTERVAL="0.2",
        **extra,
    )
    return env


@contextmanager
def workers(n: int, env: dict[str, str], log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    logs = []
    for i in range(n):
        out = open(log_dir / f"worker-{i}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(out)
        procs.append(
            subprocess.Popen([SOLO_OS, "worker", APP], env=env, stdout=out, stderr=subprocess.STDOUT)
        )
    try:
        yield procs
    finally:
        for f in logs:
            f.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def ledger_rows(path: Path) -> list[tuple[str, str, int, int]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=60)
    try:
        return [tuple(r) for r in conn.execute("SELECT kind, execution_id, attempt, pid FROM ledger")]  # type: ignore[misc]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def _terminal(h: helpers.Harness, expected: int) -> bool:
    counts = await h.store.counts()
    return counts["succeeded"] + counts["dead"] >= expected and counts["pending"] == counts["running"] == 0


@pytest.mark.postgres
async def test_two_worker_processes_run_every_event_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    env = _env(pg_url, ledger, SLEEP_MS="5")
    with workers(2, env, tmp_path) as procs:
        async with helpers.running(
            ledger_app.app, pg_url, roles=("serve",), env={"BILLING_WEBHOOK_SECRET": helpers.SECRET}
        ) as h:
            sem = asyncio.Semaphore(50)

            async def send(i: int) -> int:
                async with sem:
                    r = await h.post("billing", helpers.invoice(), key=f"inv-{i}")
                    return r.status_code

            codes = await asyncio.gather(*(send(i) for i in range(400)))
            assert set(codes) == {200}
            await helpers.eventually(lambda: _terminal(h, 800), timeout=90, interval=0.2)
            executions = await h.store.list_executions(store_mod.Filters(limit=0))
        assert all(p.poll() is None for p in procs), "a worker died"
    assert [p.returncode for p in procs] == [0, 0], "SIGTERM ends a worker cleanly with 0"
    assert len(executions) == 800 and {x.status for x in executions} == {"succeeded"}
    rows = ledger_rows(ledger)
    effects = [r for r in rows if r[0] == "effect"]
    audits = [r for r in rows if r[0] == "audit"]
    assert len({r[1] for r in effects}) == 400 and len(effects) == 400
    assert len({r[1] for r in audits}) == 400 and len(audits) == 400
    assert len({r[3] for r in rows}) == 2, "both worker processes took work"


@pytest.mark.postgres
async def test_kill_9_of_a_worker_loses_nothing_and_steps_do_not_repeat(
    pg_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    env = _env(pg_url, ledger, SLEEP_MS="400", SOLO_OS_LEASE_SECONDS="2", SOLO_OS_WORKER_CONCURRENCY="16")
    async with helpers.running(
        ledger_app.app, pg_url, roles=("serve",), env={"BILLING_WEBHOOK_SECRET": helpers.SECRET}
    ) as h:
        sem = asyncio.Semaphore(50)

        async def send(i: int) -> None:
            async with sem:
                r = await h.post("billing", helpers.invoice(), key=f"inv-{i}")
                assert r.status_code == 200

        # 250 invoices: 250 fulfil + 250 audit = 500 executions
        await asyncio.gather(*(send(i) for i in range(250)))
        with workers(3, env, tmp_path) as procs:
            victim = procs[0]
            # kill once the victim is visibly in the middle of its work
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                mine = [r for r in ledger_rows(ledger) if r[3] == victim.pid and r[0] == "effect"]
                if len(mine) >= 10:
                    break
                await asyncio.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            await helpers.eventually(lambda: _terminal(h, 500), timeout=120, interval=0.2)
            assert all(p.poll() is None for p in procs[1:])
            executions = await h.store.list_executions(store_mod.Filters(limit=0))
            lost = {
                x.id: await h.store.list_attempts(x.id) for x in executions if x.attempts > 1
            }
            steps = {x.id: await _step_attempt(h, x.id) for x in executions if x.handler == "fulfil"}
    assert len(executions) == 500 and {x.status for x in executions} == {"succeeded"}
    assert lost, "the kill should have cost some attempts"
    assert any(a.outcome == "lost" for atts in lost.values() for a in atts)
    rows = ledger_rows(ledger)
    by_exec: dict[str, list[tuple[str, str, int, int]]] = {}
    for r in rows:
        if r[0] == "effect":
            by_exec.setdefault(r[1], []).append(r)
    assert len(by_exec) == 250
    repeated_in_window = 0
    for xid, saved_attempt in steps.items():
        effects = sorted(by_exec[str(xid)], key=lambda r: r[2])
        # The step's record names the attempt that saved it; no later attempt ran it again.
        assert all(r[2] <= saved_attempt for r in effects), (xid, effects, saved_attempt)
        # An earlier effect exists only if that attempt was killed between running the step
        # and recording it (the one window no durable step can close); it must be a lost one.
        for r in effects:
            if r[2] < saved_attempt:
                outcomes = {a.attempt: a.outcome for a in lost[xid]}
                assert outcomes[r[2]] == "lost", (xid, r, outcomes)
                repeated_in_window += 1
    # The kill ends each handler the victim was running at most once, so at most its
    # concurrency (16) of steps can be in that window; each one is checked above to belong
    # to a lost attempt. (The bound was 3: with claiming ahead, 2026-12-05, the victim's slots
    # stay full between claims and 4 came up in 2 of 7 runs.)
    assert repeated_in_window <= 16, f"{repeated_in_window} steps lost in the commit window"
    # every effect whose step was recorded before the kill happened exactly once
    assert sum(len(v) for v in by_exec.values()) == 250 + repeated_in_window


async def _step_attempt(h: helpers.Harness, xid: Any) -> int:
    import sqlalchemy as sa

    from solo_os.store import _schema

    async with h.store._read() as conn:
        row = (
            await conn.execute(
                sa.select(_schema.steps.c.attempt).where(_schema.steps.c.execution_id == xid)
            )
        ).one()
    return int(row[0])


@pytest.mark.postgres
async def test_bulk_replay_of_1000_dead_executions_from_the_cli(
    pg_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    flag = tmp_path / "healthy"
    env = _env(pg_url, ledger, HEALTHY_FLAG=str(flag), SOLO_OS_WORKER_CONCURRENCY="64")
    async with helpers.running(
        ledger_app.app, pg_url, roles=("serve",), env={"BILLING_WEBHOOK_SECRET": helpers.SECRET}
    ) as h:
        sem = asyncio.Semaphore(50)

        async def send(i: int) -> None:
            async with sem:
                r = await h.post("billing", {"i": i}, event_type="job", key=f"job-{i}")
                assert r.status_code == 200

        await asyncio.gather(*(send(i) for i in range(1000)))
        with workers(1, env, tmp_path):
            await helpers.eventually(
                lambda: _count(h, "dead", 1000, handler="flaky"), timeout=120, interval=0.2
            )
            dry = subprocess.run(
                [SOLO_OS, "dlq", "replay", "--all", "--handler", "flaky", "--dry-run", "--json",
                 "--app", APP],
                env=env, capture_output=True, text=True, timeout=60,
            )
            assert dry.returncode == 0, dry.stderr
            assert json.loads(dry.stdout)["would_replay"] == 1000
            assert await _count(h, "dead", 1000, handler="flaky")
            flag.touch()
            done = subprocess.run(
                [SOLO_OS, "dlq", "replay", "--all", "--handler", "flaky", "--app", APP],
                env=env, capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, done.stderr
            assert "replayed 1000 execution(s)" in done.stdout
            await helpers.eventually(
                lambda: _count(h, "succeeded", 1000, handler="flaky"), timeout=120, interval=0.2
            )
    flaky = [r for r in ledger_rows(ledger) if r[0] == "flaky"]
    assert len(flaky) == 1000 and len({r[1] for r in flaky}) == 1000


async def _count(h: helpers.Harness, status: str, n: int, handler: str) -> bool:
    rows = await h.store.list_executions(store_mod.Filters(status=status, handler=handler, limit=0))
    return len(rows) == n
