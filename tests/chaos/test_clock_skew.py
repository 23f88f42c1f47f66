"""Hosts whose clocks disagree: one host (``solo-os run``) 30 s ahead, one 30 s behind (libfaketime
in those processes), ``serve`` and a third worker on the true clock, one PostgreSQL (a private
cluster).

60 deliveries; each handler's first attempt runs 0..3 s (longer than a third of the 4 s lease,
so leases are renewed while a skewed reaper looks at them) and asks to run again in 2 s; a cron
schedule fires every 2 s. The handlers and the cron job write their starts and ends with the
database's clock. What is asserted, on the database's clock:

- no live lease taken: no attempt lost, each attempt of each execution started once;
- no second attempt started before its ``run_after`` (end of the first + 2 s) by more than the
  poll interval, and none delayed by more than the poll interval plus a margin for load;
- every cron fire ran once, none before its time by more than the poll interval, none late
  by more than a margin.

Before the store used the database's clock, the worker ahead took back live leases and both
started retries and fires tens of seconds off.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.chaos import _private, _support

APP = str(_support.APPS / "skew.py")
N = 60
POLL = 0.5
RETRY = 2.0


# What Debian's faketime(1) preloads (the dynamic linker expands $LIB).
FAKETIME_LIB = "/usr/$LIB/faketime/libfaketime.so.1"


def _faked(env: dict[str, str], offset: str) -> tuple[list[str], dict[str, str]]:
    """``solo-os run`` (ingress, worker and scheduler) on a host whose clock is ``offset`` off:
    libfaketime preloaded into solo-os itself, as the ``faketime`` wrapper would, so that the
    test's SIGTERM reaches solo-os (the wrapper does not pass it on)."""
    args = [_support.SOLO_OS, "run", APP, "--port", str(_support.free_port())]
    return args, {**env, "LD_PRELOAD": FAKETIME_LIB, "FAKETIME": offset}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_hosts_30s_ahead_and_behind_take_no_live_lease_and_keep_time(tmp_path: Path) -> None:
    if shutil.which("faketime") is None:
        _private.need("libfaketime's faketime is not installed (apt-get install faketime)")
    t0 = time.monotonic()
    with _private.cluster() as cluster:
        url = await _private.database(cluster, "skew")
        env = _support.env_for(
            url, SKEW_DSN=url, SOLO_OS_POLL_INTERVAL=str(POLL), SOLO_OS_LEASE_SECONDS="4",
            SOLO_OS_WORKER_CONCURRENCY="16", SKEW_RETRY_S=str(RETRY), SKEW_SLEEP_MS="3000",
            FAKETIME_DONT_FAKE_MONOTONIC="1",
        )
        db = await asyncpg.connect(url)
        try:
            from tests.chaos.apps import skew

            await db.execute(skew.SCHEMA)
            with _support.processes(tmp_path) as procs:
                _, base = procs.serve(APP, env)
                for offset, name in (("-30s", "behind"), ("+30s", "ahead")):
                    procs.start(*_faked(env, offset), f"host-{name}")
                # A third worker on the true clock: its live leases are what the one ahead
                # would see as expired.
                procs.start([_support.SOLO_OS, "worker", APP], {**env, "LOG_LEVEL": "info"}, "worker-true")
                # Each skewed one says so once it knows the database's time.
                await _said(tmp_path, "host", "store.clock_offset", 2)
                await _said(tmp_path, "worker-true", "worker.started", 1)
                t_ready = time.monotonic()
                answers = await _support.send_all(base, [f"k{i}" for i in range(N)], concurrency=16)
                assert set(answers.values()) == {200}, Counter(answers.values())
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    left = await db.fetchval(
                        "SELECT count(*) FROM executions x JOIN events e ON e.id = x.event_id "
                        "WHERE x.status <> 'succeeded'"
                    )
                    if left == 0:
                        break
                    await asyncio.sleep(0.3)
                t_done = time.monotonic()
                await asyncio.sleep(2 * POLL)
                alive = all(p.poll() is None for p in procs.all)
                logs = procs.logs()
            runs = await db.fetch("SELECT execution_id, attempt, phase, pid, at FROM skew_runs")
            fires = await db.fetch("SELECT fire_at, at FROM skew_fires ORDER BY fire_at")
            lost = await db.fetchval("SELECT count(*) FROM attempts WHERE outcome = 'lost'")
            losses = await db.fetchval("SELECT coalesce(sum(losses), 0) FROM executions")
            statuses = dict(await db.fetch(
                "SELECT x.status, count(*) FROM executions x WHERE x.event_id IS NOT NULL GROUP BY 1"
            ))
        finally:
            await db.close()

    per_attempt = Counter((r["execution_id"], r["attempt"]) for r in runs)
    ends = {r["execution_id"]: r["at"] for r in runs if r["phase"] == "end"}
    starts = {r["execution_id"]: r["at"] for r in runs if r["phase"] == "start"}
    gaps = sorted((starts[x] - ends[x]).total_seconds() for x in starts if x in ends)
    fire_lag = [(f["at"] - f["fire_at"]).total_seconds() for f in fires]
    pids = Counter(r["pid"] for r in runs if r["phase"] == "start")
    print(f"retry gaps (s, want {RETRY}): min {gaps[0]:.3f} max {gaps[-1]:.3f}; second attempts "
          f"per process {sorted(pids.values())}; "
          f"started in {t_ready - t0:.1f} s, done in {t_done - t_ready:.1f} s; fires {len(fires)}, "
          f"lag min {min(fire_lag):.3f} max {max(fire_lag):.3f}; lost {lost}")
    assert lost == 0 and losses == 0, f"live leases were taken back\n{logs}"
    assert statuses == {"succeeded": N}, f"{statuses}\n{logs}"
    assert lost == 0 and losses == 0, f"live leases were taken back\n{logs}"
    assert max(per_attempt.values()) == 1, "an attempt ran twice"
    assert len(starts) == N and len(ends) == N
    assert gaps[0] >= RETRY - POLL - 0.15, f"a retry started early: {gaps[:5]}"
    assert gaps[-1] <= RETRY + POLL + 3.0, f"a retry started late: {gaps[-5:]}"
    assert len(fires) >= 3, "the cron schedule should have fired"
    assert max(Counter(f["fire_at"] for f in fires).values()) == 1, "a fire ran twice"
    assert min(fire_lag) >= -(POLL + 0.15), f"a fire ran early: {fire_lag}"
    assert max(fire_lag) <= 3.0, f"a fire ran late: {fire_lag}"
    assert "store.clock_offset" in logs, "the skewed processes should have said so"
    assert alive, logs




async def _said(logs: Path, name: str, text: str, processes: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_count_saying, logs, name, text) >= processes:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{processes} {name} processes should have logged {text}")


def _count_saying(logs: Path, name: str, text: str) -> int:
    return sum(text in f.read_text(errors="replace") for f in logs.glob(f"{name}-*.log"))
