"""``solo-os worker --processes N``: one command, N worker processes under a supervisor, on
SQLite and PostgreSQL (issue 21).

- 250 invoices (500 executions) drained by ``--processes 2``; one child gets ``kill -9`` in
  the middle of its work: the supervisor starts another, every execution succeeds, a step's
  effect ran twice only across an attempt recorded as lost, and SIGTERM to the supervisor
  then ends everything with status 0;
- SIGTERM while handlers run: both children drain (the running handlers finish, nothing is
  left running) and the supervisor exits 0;
- ``kill -9`` of the supervisor itself takes its children along (they get SIGTERM);
  ``SOLO_OS_WORKER_PROCESSES`` sets the count as ``--processes`` does;
- ``--processes 2`` with a metrics port, or a value that is neither a number nor ``auto``
  (option or variable), is refused with one line and status 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from solo_os import store as store_mod
from tests import helpers
from tests.apps import ledger_app
from tests.integration import test_processes as tp


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped) has ended too.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


def _start(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``solo-os worker`` with 2 processes (``--processes 2`` unless ``SOLO_OS_WORKER_PROCESSES``)."""
    flag = [] if "SOLO_OS_WORKER_PROCESSES" in env else ["--processes", "2"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [tp.SOLO_OS, "worker", tp.APP, *flag, *extra],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )


async def _ingest(database_url: str, invoices: int) -> None:
    async with helpers.running(
        ledger_app.app, database_url, roles=("serve",), env={"BILLING_WEBHOOK_SECRET": helpers.SECRET}
    ) as h:
        for i in range(invoices):
            r = await h.post("billing", helpers.invoice(), key=f"inv-{i}")
            assert r.status_code == 200, r.text


async def _wait_children(pid: int, n: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children(pid)
        if len(kids) == n:
            return kids
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pid} has children {_children(pid)}, not {n}")


async def _counts(database_url: str) -> dict[str, int]:
    store = store_mod.connect(database_url)
    try:
        return dict(await store.counts())
    finally:
        await store.close()


async def _until(database_url: str, done: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = await _counts(database_url)
        if counts["succeeded"] + counts["dead"] >= done and counts["pending"] == counts["running"] == 0:
            return counts
        assert time.monotonic() < deadline, counts
        await asyncio.sleep(0.2)


async def test_kill_9_of_one_process_loses_nothing_and_another_takes_its_place(
    database_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    env = tp._env(database_url, ledger, SLEEP_MS="200", SOLO_OS_LEASE_SECONDS="2",
                  SOLO_OS_WORKER_CONCURRENCY="16")
    await _ingest(database_url, 250)
    sup = _start(env, tmp_path / "worker.log")
    try:
        first = await _wait_children(sup.pid, 2)
        victim = first[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = [r for r in tp.ledger_rows(ledger) if r[3] == victim and r[0] == "effect"]
            if len(mine) >= 10:
                break
            await asyncio.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (kids := _children(sup.pid)) and (victim in kids or len(kids) < 2):
            assert time.monotonic() < deadline, kids
            await asyncio.sleep(0.05)
        assert len(kids) == 2 and first[1] in kids, "the supervisor replaced the killed process"
        counts = await _until(database_url, 500, timeout=120)
        assert sup.poll() is None
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if sup.poll() is None:
            sup.kill()
    assert counts["succeeded"] == 500, counts
    assert not any(_alive(pid) for pid in kids)
    store = store_mod.connect(database_url)
    try:
        executions = await store.list_executions(store_mod.Filters(limit=0))
        attempts = {x.id: await store.list_attempts(x.id) for x in executions}
    finally:
        await store.close()
    assert any(a.outcome == "lost" for atts in attempts.values() for a in atts), "the kill cost attempts"
    runs: dict[tuple[str, str], list[int]] = {}
    for kind, xid, attempt, _pid in tp.ledger_rows(ledger):
        runs.setdefault((kind, xid), []).append(attempt)
    assert len([k for k in runs if k[0] == "effect"]) == 250
    assert len([k for k in runs if k[0] == "audit"]) == 250
    for (kind, xid), done in runs.items():
        if kind not in ("effect", "audit"):
            continue
        [xid_] = [x.id for x in executions if str(x.id) == xid]
        outcomes = {a.attempt: a.outcome for a in attempts[xid_]}
        # A second run only ever follows an attempt that died with the killed process.
        for attempt in sorted(done)[:-1]:
            assert outcomes[attempt] == "lost", (kind, xid, done, outcomes)
    lines = (tmp_path / "worker.log").read_text()
    assert f"process {victim} was ended by signal 9; starting another" in lines


async def test_sigterm_drains_every_process_and_exits_0(database_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    env = tp._env(database_url, ledger, SLEEP_MS="1500", SOLO_OS_SHUTDOWN_GRACE="20")
    await _ingest(database_url, 20)
    sup = _start(env, tmp_path / "worker.log", "--concurrency", "50")
    try:
        kids = await _wait_children(sup.pid, 2)
        deadline = time.monotonic() + 30
        while len([r for r in tp.ledger_rows(ledger) if r[0] == "effect"]) < 20:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=40) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if sup.poll() is None:
            sup.kill()
    assert not any(_alive(pid) for pid in kids)
    counts = await _counts(database_url)
    # The running fulfil handlers finished their sleep and were recorded; nothing is left running.
    assert counts["running"] == 0 and counts["succeeded"] >= 20, counts
    done = [r for r in tp.ledger_rows(ledger) if r[0] == "done"]
    assert len(done) == 20 and len({r[1] for r in done}) == 20


async def test_kill_9_of_the_supervisor_ends_its_processes(sqlite_url: str, tmp_path: Path) -> None:
    env = tp._env(sqlite_url, tmp_path / "ledger.db", SOLO_OS_WORKER_PROCESSES="2")
    sup = _start(env, tmp_path / "worker.log")
    try:
        kids = await _wait_children(sup.pid, 2)
    finally:
        sup.kill()
        sup.wait(timeout=10)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in kids):
        assert time.monotonic() < deadline, "children outlived their supervisor"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("extra", "variable", "message"),
    [
        (["--processes", "2", "--metrics-port", "9464"], "",
         "one /metrics port cannot serve several processes"),
        (["--processes", "many"], "", "neither a number from 1 to 256 nor 'auto'"),
        ([], "0", "SOLO_OS_WORKER_PROCESSES: Value error, must be a number from 1 to 256, or 'auto'"),
    ],
)
def test_unusable_processes_settings_are_refused_with_one_line(
    sqlite_url: str, tmp_path: Path, extra: list[str], variable: str, message: str
) -> None:
    env = tp._env(sqlite_url, tmp_path / "ledger.db")
    if variable:
        env["SOLO_OS_WORKER_PROCESSES"] = variable
    args = [tp.SOLO_OS, "worker", tp.APP, *extra]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert message in " ".join(r.stderr.split())
