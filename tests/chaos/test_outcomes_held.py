"""A worker that cannot write finished outcomes keeps them and writes them when the store is
back: through a short PostgreSQL outage (shorter than the lease) no handler runs twice.

The test makes its own PostgreSQL cluster (never the shared server). ``serve`` and one
``worker`` (16 at a time, handlers sleeping 0..500 ms) run 240 deliveries; once the worker has
run a few dozen, the handlers are held at a gate (``COUNT_GATE``) until each running one has
reached it, the cluster is stopped (``-m immediate``: every session cut), the gate is opened, so
the held handlers finish in the gap and cannot record their outcome, and after 3 s down the
cluster is started again.

What is asserted: handlers finished while the database was down; every execution succeeds;
every handler ran exactly once (counted in a file, outside the database); the same worker
process did it all. An outcome finished in the gap either meets a failed write, and is held
and retried (``execution.outcome_held``, unit-tested in ``tests/unit/test_outcomes.py``), or
waits in the writer's queue while the writer waits for a connection; which one is up to timing
(2 or 3 of 14 logged ``outcome_held`` on a quiet machine, none once on a loaded one), so the
log line is not asserted here.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.chaos import _private, _support

APP = str(_support.APPS / "counted.py")
N = 240


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_outage_shorter_than_the_lease_runs_no_handler_twice(tmp_path: Path) -> None:
    counts = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    with _private.cluster() as cluster:
        url = await _private.database(cluster, "held")
        env = _support.env_for(
            url, COUNT_FILE=str(counts), COUNT_GATE=str(gate), COUNT_SLEEP_MS="500",
            SOLO_OS_POLL_INTERVAL="0.2",
            SOLO_OS_LEASE_SECONDS="12", SOLO_OS_WORKER_CONCURRENCY="16",
        )
        with _support.processes(tmp_path) as procs:
            serve, base = procs.serve(APP, env)
            answers = await _support.send_all(base, [f"k{i}" for i in range(N)], concurrency=16)
            assert set(answers.values()) == {200}, Counter(answers.values())
            worker = procs.worker(APP, env)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _lines(counts) < 40:
                await asyncio.sleep(0.05)
            gate.touch()  # handlers now wait at the gate once their sleep (<= 0.5 s) is over
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.stop)
            down_at = _lines(counts)
            gate.unlink()  # the held handlers finish while the database is down
            await asyncio.sleep(3.0)
            in_outage = _lines(counts) - down_at
            await asyncio.to_thread(cluster.start)
            db = await asyncpg.connect(url)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    left = await db.fetchval("SELECT count(*) FROM executions WHERE status <> 'succeeded'")
                    if left == 0:
                        break
                    await asyncio.sleep(0.3)
                statuses = dict(await db.fetch("SELECT status, count(*) FROM executions GROUP BY status"))
                # Lease expiry is 12 s: had an outcome been dropped, its rerun comes within it.
                await asyncio.sleep(1.0)
            finally:
                await db.close()
            alive = worker.poll() is None and serve.poll() is None
            logs = procs.logs()
    runs = Counter(line.split()[0] for line in counts.read_text().splitlines())
    twice = {k: v for k, v in runs.items() if v > 1}
    print(f"ran {sum(runs.values())} handlers for {len(runs)} executions; {down_at} before the "
          f"outage, {in_outage} during it; held outcomes logged: {logs.count('execution.outcome_held')}")
    assert statuses == {"succeeded": N}, f"{statuses}\n{logs}"
    assert not twice, f"{len(twice)} handlers ran twice: {twice}\n{logs}"
    assert len(runs) == N
    assert in_outage > 0, "no handler finished while the database was down"
    assert "execution.unrecorded" not in logs
    assert alive, logs


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
