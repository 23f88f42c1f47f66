"""Several hosts on one PostgreSQL host: Linux network namespaces joined through a private
switch (``_net``), PostgreSQL on ``db``, ``solo-os serve`` on ``ingress``, ``solo-os worker`` on
``w1`` and ``w2``, ``solo-os scheduler`` on ``w1``, and the deliveries sent from ``client``.

5,000 signed deliveries; while they are sent and run, ``w2``'s link goes down for 20 s (its
leases are 5 s): ``w1`` takes back its leases and finishes the work. Each handler run is
counted in a file per host, outside the database. When the link comes back, ``w2`` (the same
process) claims work again: a second wave sent after the link returns runs partly on it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster import _hosts

APP = str(_hosts.APPS / "hosts.py")
# 5,000 as the issue asks (about 80 s here); lower it with the variable on a slower machine.
FIRST = int(os.environ.get("HOSTS_TEST_DELIVERIES", "5000"))
SECOND, BATCHES = 100, 10  # the second wave: batches of 100, until w2 runs some of it
CUT_SECONDS = 20.0
CONCURRENCY = 16  # handlers per worker (also the most a cut-off worker can have in flight)


def _runs(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


async def _drained(h: _hosts.Hosts, expected: int, timeout: float) -> dict[str, int]:
    conn = await h.connect()
    try:
        deadline = time.monotonic() + timeout
        while True:
            statuses = dict(
                await conn.fetch(
                    "SELECT status, count(*) FROM executions WHERE event_id IS NOT NULL GROUP BY 1"
                )
            )
            if statuses == {"succeeded": expected} or time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.3)
    finally:
        await conn.close()


async def _executions(h: _hosts.Hosts, prefix: str) -> set[str]:
    conn = await h.connect()
    try:
        rows = await conn.fetch(
            "SELECT x.id FROM executions x JOIN events e ON e.id = x.event_id "
            "WHERE e.idempotency_key LIKE $1",
            f"{prefix}%",
        )
        return {str(r[0]) for r in rows}
    finally:
        await conn.close()


async def _ran_on(h: _hosts.Hosts, path: Path, prefix: str) -> bool:
    return bool(await _executions(h, prefix) & set(_runs(path)))


async def _running_on(h: _hosts.Hosts, pid: int) -> int:
    """Executions still leased to the worker process ``pid`` (its worker id has its pid)."""
    conn = await h.connect()
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM executions WHERE status = 'running' AND worker_id LIKE $1", f"%:{pid}:%"
            )
        )
    finally:
        await conn.close()


async def _lost_on(h: _hosts.Hosts, pid: int) -> set[str]:
    """Executions with an attempt of the worker process ``pid`` that the store recorded as lost."""
    conn = await h.connect()
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT execution_id FROM attempts WHERE outcome = 'lost' AND worker_id LIKE $1",
            f"%:{pid}:%",
        )
        return {str(r[0]) for r in rows}
    finally:
        await conn.close()


async def _cut_for(h: _hosts.Hosts, host: str, seconds: float, pid: int) -> int:
    """Cut ``host`` off for ``seconds``; how many executions it still held at the end."""
    h.net.cut(host)
    try:
        await asyncio.sleep(seconds)
        return await _running_on(h, pid)
    finally:
        h.net.restore(host)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_a_worker_host_cut_off_loses_nothing_and_rejoins_without_a_restart(tmp_path: Path) -> None:
    files = {name: tmp_path / f"runs-{name}.txt" for name in ("w1", "w2")}
    ticks = tmp_path / "ticks.txt"
    with _hosts.hosts(tmp_path, "ingress", "w1", "w2") as h:
        h.env = {
            "COUNT_SLEEP_MS": "100",
            "SOLO_OS_LEASE_SECONDS": "5",
            "SOLO_OS_POLL_INTERVAL": "0.5",
            "SOLO_OS_WORKER_CONCURRENCY": str(CONCURRENCY),
            "TICK_FILE": str(ticks),
            "COUNT_FILE": str(tmp_path / "runs-ingress.txt"),
        }
        base = h.serve("ingress", APP, h.host_env())
        w1 = h.worker("w1", APP, h.host_env(COUNT_FILE=str(files["w1"])))
        w2 = h.worker("w2", APP, h.host_env(COUNT_FILE=str(files["w2"])))
        h.scheduler("w1", APP, h.host_env(COUNT_FILE=str(files["w1"])))
        started = time.monotonic()
        sending = asyncio.create_task(h.send([base], [f"a-{i}" for i in range(FIRST)]))
        held = 0  # cut w2 off mid-run, at a moment it holds leases
        while not sending.done() and (len(_runs(files["w2"])) < FIRST // 20 or held == 0):
            held = await _running_on(h, w2.pid)
        w2_before = len(_runs(files["w2"]))
        left = await _cut_for(h, "w2", CUT_SECONDS, w2.pid)
        restored_at = time.monotonic()
        w2_during = len(_runs(files["w2"])) - w2_before
        first = await sending
        statuses = await _drained(h, FIRST, 120)
        drained_at = time.monotonic()
        # The second wave, in batches until w2 runs some of it (its claim backoff is at most 10 s).
        second: dict[str, int] = {}
        while len(second) < SECOND * BATCHES and not await _ran_on(h, files["w2"], "b-"):
            batch = [f"b-{len(second) + i}" for i in range(SECOND)]
            second.update(await h.send([base], batch))
            statuses2 = await _drained(h, FIRST + len(second), 60)
            await asyncio.sleep(1.5)  # the batches span w2's longest claim back-off (10 s)
        rejoined = time.monotonic() - restored_at
        alive = w1.poll() is None and w2.poll() is None
        wave1, wave2 = await _executions(h, "a-"), await _executions(h, "b-")
        lost_on_w2 = await _lost_on(h, w2.pid)
        logs = h.procs.logs()
    per_host = {name: Counter(_runs(path)) for name, path in files.items()}
    runs = per_host["w1"] + per_host["w2"]
    twice = {x for x, n in runs.items() if n > 1}
    print(
        f"{FIRST} deliveries sent and run in {drained_at - started:.1f} s; w2 cut off for "
        f"{CUT_SECONDS:.0f} s after {w2_before} of its runs, holding {held} leases (at the end of "
        f"the cut: {left}), finishing {w2_during} handlers it had started; run twice: {len(twice)}; "
        f"second wave: {len(wave2 & set(per_host['w2']))} of {len(second)} on w2, "
        f"{rejoined:.1f} s after its link returned"
    )
    assert Counter(first.values()) == {200: FIRST}, Counter(first.values())
    assert second and set(second.values()) == {200}, Counter(second.values())
    assert statuses == {"succeeded": FIRST}, f"{statuses}\n{logs}"
    assert statuses2 == {"succeeded": FIRST + len(second)}, f"{statuses2}\n{logs}"
    assert len(wave1) == FIRST and len(wave2) == len(second)
    assert set(runs) == wave1 | wave2, "every execution's handler ran (and nothing else)"
    assert w2_before > 0 and held > 0, "w2 was cut off while it held leases"
    assert left == 0, f"{left} of w2's leases were not taken back and finished while it was cut off"
    # The one thing a cut longer than the lease can double: handlers w2 had run when its link
    # went down whose outcomes it could not write (still running then, or finished with the
    # write not yet committed): their leases expire, the store records w2's attempt as lost and
    # w1 runs them again (at-least-once, SPEC). Nothing else: every double is such a lost attempt
    # of w2, and there are at most what w2 held then (its handlers in flight and one batch of
    # finished ones).
    assert twice <= lost_on_w2, f"ran twice without a lost attempt of w2: {twice - lost_on_w2}\n{logs}"
    assert len(twice) <= 2 * CONCURRENCY, f"{len(twice)} executions ran twice\n{logs}"
    assert all(runs[x] == 2 and per_host["w1"][x] == 1 and per_host["w2"][x] == 1 for x in twice)
    assert not twice & wave2, "after the link returned nothing ran twice"
    assert wave2 & set(per_host["w2"]), f"w2 did not claim work after its link returned\n{logs}"
    assert alive, f"a worker exited\n{logs}"
    fires = Counter(line.split()[0] for line in ticks.read_text().splitlines())
    assert fires and max(fires.values()) == 1, f"cron fired twice: {fires}"
