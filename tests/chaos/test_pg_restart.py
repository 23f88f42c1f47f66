"""PostgreSQL restarted during ingest: a 2xx means stored, everything else is a 503, and the
processes that were running carry on by themselves.

The test starts its own PostgreSQL cluster (``_cluster.py``: initdb into a temporary
directory, a free port), never the shared server. ``solo-os serve`` and ``solo-os worker`` run
against it while deliveries arrive continuously over real HTTP (8 at a time); mid-way the
cluster is restarted with ``pg_ctl restart -m fast`` (every session is disconnected and any
open transaction rolled back).

What is asserted:

- every answer is 200 or 503 (with ``Retry-After``): no 500, no dropped connection;
- every delivery answered 200 is stored (a 503'd one may or may not be: a provider retries it,
  and the key makes the retry a duplicate if it was);
- the restart happened (the postmaster start time changed) and deliveries are accepted again
  after it without restarting ``serve``;
- the same worker process (never restarted) runs every accepted event to ``succeeded``,
  including events that arrived after the restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.chaos import _cluster, _support

APP = str(_support.APPS / "ledger.py")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def cluster() -> Iterator[_cluster.Cluster]:
    bindir, why = _cluster.find_bindir()
    prefix, why_user = _cluster.runas_prefix()
    reason = why or why_user
    if bindir is None or prefix is None:
        if IN_CI:
            pytest.fail(f"CI=true but a private PostgreSQL cluster cannot be made: {reason}")
        pytest.skip(f"a private PostgreSQL cluster cannot be made here: {reason}")
    c = _cluster.Cluster(bindir, prefix)
    try:
        c.init()
        c.start()
        yield c
    finally:
        try:
            c.stop()
        finally:
            c.remove()


async def _started_at(url: str) -> object:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_postgres_restart_during_ingest_loses_no_acknowledged_delivery(
    cluster: _cluster.Cluster, tmp_path: Path
) -> None:
    admin = await asyncpg.connect(cluster.url(), timeout=10)
    await admin.execute("CREATE DATABASE chaos")
    await admin.close()
    url = cluster.url("chaos")
    env = _support.env_for(url, CHAOS_LEDGER_DSN=url, CHAOS_SLEEP_MS="0", SOLO_OS_POLL_INTERVAL="0.2",
                           SOLO_OS_LEASE_SECONDS="5")
    upgrade = await asyncio.to_thread(
        subprocess.run, [_support.SOLO_OS, "db", "upgrade"], env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    db = await asyncpg.connect(url)
    try:
        from tests.chaos.apps import ledger

        await db.execute(ledger.SCHEMA)
        await db.close()
        with _support.processes(tmp_path) as procs:
            serve, base = procs.serve(APP, env)
            worker = procs.worker(APP, env)
            before = await _started_at(url)
            answers: list[tuple[str, int, float, str | None]] = []  # key, status, at, Retry-After
            stop = asyncio.Event()
            restarted_at: list[float] = []

            async def sender(n: int, client: httpx.AsyncClient) -> None:
                i = 0
                while not stop.is_set():
                    key = f"d{n}-{i}"
                    i += 1
                    try:
                        r = await _support.post(client, base, key)
                        answers.append((key, r.status_code, time.monotonic(), r.headers.get("retry-after")))
                    except httpx.HTTPError as exc:
                        answers.append((key, -1, time.monotonic(), type(exc).__name__))

            async with httpx.AsyncClient(timeout=30) as client:
                senders = [asyncio.create_task(sender(n, client)) for n in range(8)]
                # Restart once both processes are in their stride: the worker has run events.
                probe = await asyncpg.connect(url)
                try:
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and not await probe.fetchval(
                        "SELECT count(*) FROM executions WHERE status = 'succeeded'"
                    ):
                        await asyncio.sleep(0.2)
                finally:
                    await probe.close()
                await asyncio.sleep(1.0)
                await asyncio.to_thread(cluster.restart, "fast")
                restarted_at.append(time.monotonic())
                # Keep sending until deliveries have been accepted again for two seconds.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    ok_after = [a for a in answers if a[1] == 200 and a[2] > restarted_at[0]]
                    if ok_after and time.monotonic() - min(a[2] for a in ok_after) > 2.0:
                        break
                stop.set()
                await asyncio.gather(*senders)

            after = await _started_at(url)
            db = await asyncpg.connect(url)
            accepted = {a[0] for a in answers if a[1] == 200}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                left = await db.fetchval(
                    "SELECT count(*) FROM executions WHERE status <> 'succeeded'"
                )
                if left == 0:
                    break
                await asyncio.sleep(0.3)
            assert serve.poll() is None and worker.poll() is None, procs.logs()
            stored = {r["idempotency_key"] for r in await db.fetch("SELECT idempotency_key FROM events")}
            statuses = await db.fetch("SELECT status, count(*) FROM executions GROUP BY status")
            late = await db.fetchval(
                "SELECT count(*) FROM executions x JOIN events e ON e.id = x.event_id "
                "WHERE x.status = 'succeeded' AND e.received_at > $1",
                after,
            )
            logs = procs.logs()
    finally:
        if not db.is_closed():
            await db.close()

    counts = Counter(a[1] for a in answers)
    print(f"answers {dict(counts)}, stored {len(stored)}, accepted {len(accepted)}, "
          f"succeeded after the restart {late}")
    assert after != before, "the cluster should have restarted"
    assert set(counts) <= {200, 503}, f"{counts}\n{logs}\n{cluster.log()}"
    assert all(a[3] for a in answers if a[1] == 503), "every 503 carries Retry-After"
    assert accepted <= stored, f"{len(accepted - stored)} acknowledged deliveries were not stored"
    assert any(a[2] > restarted_at[0] for a in answers if a[1] == 200), "no 200 after the restart"
    assert dict(statuses) == {"succeeded": 2 * len(stored)}, dict(statuses)
    assert late > 0, "the worker should have run events that arrived after the restart"
