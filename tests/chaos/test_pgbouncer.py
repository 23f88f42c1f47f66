"""Behind PgBouncer in transaction pooling mode (started by the test, on a private cluster):
``solo-os db upgrade``, ``serve``, ``worker`` and ``scheduler`` with
``SOLO_OS_DB_POOLER=transaction`` and the listener on a direct ``SOLO_OS_LISTEN_URL``.

Without the pooler mode, asyncpg's named statements meet another session's
(``prepared statement "__asyncpg_stmt_1__" already exists``) and the processes exit at start.

Asserted: every delivery (ingest) is stored; every event runs (drain), its first attempt asks to
run again in 2 s and the second runs (retry); the cron schedule fires, each fire once; and a
delivery's first attempt starts well under the poll interval (10 s) after its 200: the
wake-up came through LISTEN/NOTIFY on the direct connection.

A second test: a multi-host ``DATABASE_URL`` whose first host does not answer
(``target_session_attrs=read-write``) upgrades and serves (it was a raw ``ValueError``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.chaos import _pgbouncer, _private, _support

APP = str(_support.APPS / "skew.py")
N = 100


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_ingest_drain_retry_and_cron_behind_pgbouncer_in_transaction_mode(tmp_path: Path) -> None:
    with _private.cluster() as cluster, _pgbouncer.pgbouncer(cluster) as bouncer:
        direct = await _private.database(cluster, "pooled")
        pooled = f"{bouncer}/pooled"
        env = _support.env_for(
            pooled, SKEW_DSN=direct, SKEW_SLEEP_MS="0", SKEW_RETRY_S="2", SOLO_OS_POLL_INTERVAL="10",
            SOLO_OS_DB_POOLER="transaction", SOLO_OS_LISTEN_URL=direct,
        )
        upgrade = await asyncio.to_thread(
            subprocess.run, [_support.SOLO_OS, "db", "upgrade"], env=env, capture_output=True,
            text=True, timeout=60,
        )
        assert upgrade.returncode == 0, upgrade.stderr
        db = await asyncpg.connect(direct)
        try:
            from tests.chaos.apps import skew

            await db.execute(skew.SCHEMA)
            with _support.processes(tmp_path) as procs:
                _, base = procs.serve(APP, env)
                procs.start([_support.SOLO_OS, "worker", APP], {**env, "LOG_LEVEL": "info"}, "worker")
                procs.start([_support.SOLO_OS, "scheduler", APP], env, "scheduler")
                await _started(tmp_path / "worker-1.log")
                answers = await _support.send_all(base, [f"k{i}" for i in range(N)], concurrency=16)
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    left = await db.fetchval(
                        "SELECT count(*) FROM executions WHERE event_id IS NOT NULL AND status <> 'succeeded'"
                    )
                    if left == 0:
                        break
                    await asyncio.sleep(0.3)
                alive = all(p.poll() is None for p in procs.all)
                logs = procs.logs()
            stored = await db.fetchval("SELECT count(*) FROM events")
            statuses = dict(await db.fetch(
                "SELECT status, count(*) FROM executions WHERE event_id IS NOT NULL GROUP BY 1"
            ))
            runs = Counter((r[0], r[1]) for r in await db.fetch("SELECT phase, attempt FROM skew_runs"))
            waits = sorted(await db.fetchval(
                "SELECT array_agg(extract(epoch FROM r.at - e.received_at)::float8) FROM skew_runs r "
                "JOIN executions x ON x.id = r.execution_id JOIN events e ON e.id = x.event_id "
                "WHERE r.attempt = 1"
            ))
            fires = Counter(r[0] for r in await db.fetch("SELECT fire_at FROM skew_fires"))
        finally:
            await db.close()
    wake, median = waits[-1], waits[len(waits) // 2]
    print(f"stored {stored}, {statuses}, runs {dict(runs)}, first start median {median:.3f} s, "
          f"slowest {wake:.3f} s, "
          f"fires {len(fires)}")
    assert set(answers.values()) == {200}, Counter(answers.values())
    assert stored == N
    assert statuses == {"succeeded": N}, f"{statuses}\n{logs}"
    assert runs == {("end", 1): N, ("start", 2): N}, runs
    # Polling alone (every 10 s) would put the median near 5 s; a loaded machine may delay a
    # few starts by seconds, never most of them.
    assert median < 1.0, f"half the deliveries waited {median:.1f} s or more: no LISTEN wake-up\n{logs}"
    assert wake < 8.0, f"a delivery waited {wake:.1f} s: as long as the poll\n{logs}"
    assert fires and max(fires.values()) == 1, fires
    assert "already exists" not in logs
    assert alive, logs


@pytest.mark.postgres
@pytest.mark.timeout(60)
async def test_a_multi_host_url_skips_a_host_that_does_not_answer(tmp_path: Path) -> None:
    with _private.cluster() as cluster:
        await _private.database(cluster, "multi")
        url = (f"postgresql://postgres@127.0.0.1:{_support.free_port()},127.0.0.1:{cluster.port}"
               "/multi?target_session_attrs=read-write")
        env = _support.env_for(url)
        upgrade = await asyncio.to_thread(
            subprocess.run, [_support.SOLO_OS, "db", "upgrade"], env=env, capture_output=True,
            text=True, timeout=60,
        )
        assert upgrade.returncode == 0, upgrade.stderr
        assert "ValueError" not in upgrade.stderr
        with _support.processes(tmp_path) as procs:
            _, base = procs.serve(str(_support.APPS / "counted.py"), env)
            answers = await _support.send_all(base, [f"m{i}" for i in range(5)])
        assert set(answers.values()) == {200}
        db = await asyncpg.connect(cluster.url("multi"))
        try:
            assert await db.fetchval("SELECT count(*) FROM events") == 5
        finally:
            await db.close()


async def _started(log: Path) -> None:
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        if "worker.started" in text and "store.listening" in text:  # and its listener connected
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker did not start and listen:\n{text}")
