"""SQLite's hand-off (``store/_sqlite_claim.py``) with real processes: two ``solo-os run`` on one
database file take deliveries at once, each ingest leasing its executions to its own worker;
one of them gets ``kill -9`` while handlers it was handed still run. Nothing is lost: the
other process takes them back when their lease expires and runs each to success once.

In-process, a delivery to ``run`` starts its handler with no claim of the worker at all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from solo_os.store import sqlite as sqlite_store
from tests import helpers
from tests.apps import ledger_app

APP = str(Path(ledger_app.__file__))
SOLO_OS = str(Path(sys.executable).parent / "solo-os")
LEASE = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [SOLO_OS, "run", APP, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    helpers.wait_answering(f"{url}/readyz", proc, log)
    return proc, url


def _query(db: Path, sql: str, *args: Any) -> list[Any]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql, args).fetchall()


async def _send(client: httpx.AsyncClient, url: str, key: str) -> int:
    body, headers = helpers.delivery(helpers.invoice(), key=key)
    r = await client.post(f"{url}/webhooks/billing", content=body, headers=headers)
    return r.status_code


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_kill_9_of_a_run_process_after_its_hand_offs_loses_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    ledger = tmp_path / "ledger.db"
    env = {
        **os.environ, "DATABASE_URL": sqlite_url, "BILLING_WEBHOOK_SECRET": helpers.SECRET,
        "LEDGER_DB": str(ledger), "LOG_LEVEL": "warn", "SLEEP_MS": "1500",
        "SOLO_OS_LEASE_SECONDS": str(LEASE), "SOLO_OS_POLL_INTERVAL": "0.5",
    }
    victim, victim_url = _start(env, tmp_path / "victim.log")
    other, other_url = _start(env, tmp_path / "other.log")
    answered: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:

            async def feed(url: str, prefix: str, n: int) -> None:
                for i in range(n):
                    key = f"{prefix}-{i}"
                    assert await _send(client, url, key) == 200
                    answered.append(key)

            # Both processes ingest (and hand off) at once, on the same file.
            await asyncio.gather(feed(victim_url, "v", 25), feed(other_url, "o", 25))
            held = _query(
                db, "SELECT count(*) FROM executions WHERE status = 'running' AND worker_id LIKE ?",
                f"%:{victim.pid}:%",
            )[0][0]
            assert held > 0, "the victim should hold running executions when killed"
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            await feed(other_url, "after", 10)  # the survivor keeps taking deliveries

        deadline = time.monotonic() + 90
        while _query(db, "SELECT count(*) FROM executions WHERE status <> 'succeeded'")[0][0]:
            assert other.poll() is None, (tmp_path / "other.log").read_text()
            assert time.monotonic() < deadline, _query(
                db, "SELECT status, count(*) FROM executions GROUP BY status"
            )
            await asyncio.sleep(0.2)
    finally:
        for proc in (victim, other):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)

    keys = {r[0] for r in _query(db, "SELECT idempotency_key FROM events")}
    assert keys == set(answered) and len(answered) == 60  # every 200 was stored
    executions = {_uuid(x): h for x, h in _query(db, "SELECT id, handler FROM executions")}
    assert Counter(executions.values()) == {"fulfil": 60, "audit": 60}
    attempts = {
        (_uuid(x), n): outcome
        for x, n, outcome in _query(db, "SELECT execution_id, attempt, outcome FROM attempts")
    }
    assert "lost" in attempts.values(), "the kill should have cost attempts"
    succeeded = Counter(x for (x, _), outcome in attempts.items() if outcome == "succeeded")
    assert succeeded == dict.fromkeys(executions, 1), "each execution succeeded exactly once"
    # The handler's end ("done") ran once per execution on its succeeded attempt; any other
    # run of it belongs to an attempt the store recorded as lost (killed before its outcome).
    rows = _query(ledger, "SELECT execution_id, attempt FROM ledger WHERE kind = 'done'")
    done = Counter((_uuid(x), n) for x, n in rows)
    fulfil = {x for x, h in executions.items() if h == "fulfil"}
    assert {x for x, _ in done} == fulfil
    for (x, n), runs in done.items():
        assert runs == 1, (x, n)
        assert attempts[(x, n)] in ("succeeded", "lost"), (x, n, attempts[(x, n)])
    assert sum(attempts[k] == "succeeded" for k in done) == len(fulfil)


def _uuid(x: Any) -> uuid.UUID:
    return uuid.UUID(bytes=x) if isinstance(x, bytes) else uuid.UUID(str(x))


async def test_in_run_a_delivery_starts_with_no_claim_of_the_worker(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One writing transaction per delivery: the ingest leased it to the worker."""
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("LEDGER_DB", str(ledger))
    async with helpers.running(ledger_app.app, sqlite_url, poll_interval=30.0) as h:
        store = h.store
        assert isinstance(store, sqlite_store.SQLiteStore)
        await asyncio.sleep(0.2)  # the worker's first claims (nothing due) are done
        claims = 0
        real = store.claim

        async def counting(*args: Any, **kw: Any) -> Any:
            nonlocal claims
            claims += 1
            return await real(*args, **kw)

        monkeypatch.setattr(store, "claim", counting)
        for i in range(5):
            r = await h.post("billing", {"n": i}, event_type="note", key=f"k-{i}")
            assert r.status_code == 200 and r.json()["executions"] == 1

        async def all_done() -> bool:
            if not ledger.exists():
                return False
            return bool(_query(ledger, "SELECT count(*) FROM ledger WHERE kind = 'audit'")[0][0] == 5)

        await helpers.eventually(all_done, timeout=10)
        assert claims == 0
