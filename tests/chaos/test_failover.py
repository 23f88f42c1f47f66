"""A PostgreSQL failover during continuous ingest and draining: a primary and a synchronous
streaming standby (private clusters), the primary's postmaster killed (``kill -9``) and the
standby promoted, while ``serve`` takes deliveries (8 senders) and a worker runs them.

Two ways to reach the new primary, one run each: the multi-host URL
(``postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write``), and one address that moves
(a TCP relay in the test, standing in for a virtual IP or a managed database's DNS flip).

Asserted: every answer is 200 or 503 with Retry-After; every delivery answered 200 is on the
new primary; every execution succeeds and each handler ran once (counted in a file, outside the
database); ``serve`` and the worker are the same processes; the time without service (from the
kill to the first 200 after it) is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.chaos import _private, _replica, _support

APP = str(_support.APPS / "counted.py")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("reach", ["multi-host", "moving-address"])
async def test_failover_keeps_every_acknowledged_delivery_and_runs_each_handler_once(
    reach: str, tmp_path: Path
) -> None:
    counts = tmp_path / "runs.txt"
    with _replica.pair() as (primary, standby):
        await _replica.make_synchronous(primary)
        await _private.database(primary, "fo")
        relay = _replica.Relay(primary.port)
        with relay.running():
            if reach == "multi-host":
                url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/fo"
                       "?target_session_attrs=read-write")
            else:
                url = f"postgresql://postgres@127.0.0.1:{relay.port}/fo"
            env = _support.env_for(
                url, COUNT_FILE=str(counts), COUNT_SLEEP_MS="200", SOLO_OS_POLL_INTERVAL="0.5",
                SOLO_OS_LEASE_SECONDS="15",
            )
            with _support.processes(tmp_path) as procs:
                serve, base = procs.serve(APP, env)
                worker = procs.worker(APP, env)
                answers, killed_at = await _run(base, counts, primary, standby, relay, reach)
                new = await asyncpg.connect(standby.url("fo"))
                try:
                    accepted = {a[0] for a in answers if a[1] == 200}
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        left = await new.fetchval(
                            "SELECT count(*) FROM executions WHERE status <> 'succeeded'"
                        )
                        if left == 0:
                            break
                        await asyncio.sleep(0.3)
                    await asyncio.sleep(1.0)
                    stored = {r[0] for r in await new.fetch("SELECT idempotency_key FROM events")}
                    statuses = dict(await new.fetch("SELECT status, count(*) FROM executions GROUP BY 1"))
                finally:
                    await new.close()
                alive = serve.poll() is None and worker.poll() is None
                logs = procs.logs()
    codes = Counter(a[1] for a in answers)
    oks = sorted(a[2] for a in answers if a[1] == 200 and a[2] > killed_at - 1.0)
    down = max(b - a for a, b in itertools.pairwise(oks))  # the longest gap between 200s
    runs = Counter(line.split()[0] for line in counts.read_text().splitlines())
    twice = sum(1 for v in runs.values() if v > 1)
    print(f"[{reach}] answers {dict(codes)}; stored {len(stored)}; without service {down:.2f} s "
          f"(the longest gap between 200s from 1 s before the kill); handlers run twice: {twice}")
    failed = Counter(a[3] for a in answers if a[1] == -1)
    assert set(codes) <= {200, 503}, f"{codes} {failed}\n{logs}"
    assert all(a[3] for a in answers if a[1] == 503), "every 503 carries Retry-After"
    assert accepted <= stored, f"{len(accepted - stored)} acknowledged deliveries lost"
    assert statuses == {"succeeded": len(stored)}, f"{statuses}\n{logs}"
    assert twice == 0, f"{twice} handlers ran twice\n{logs}"
    assert len(runs) == len(stored)
    assert alive, logs


async def _run(base: str, counts: Path, primary: object, standby: object, relay: _replica.Relay,
               reach: str) -> tuple[list[tuple[str, int, float, str | None]], float]:
    answers: list[tuple[str, int, float, str | None]] = []
    stop = asyncio.Event()

    async def sender(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while not stop.is_set():
            key = f"{n}-{i}"
            i += 1
            try:
                r = await _support.post(client, base, key)
                answers.append((key, r.status_code, time.monotonic(), r.headers.get("retry-after")))
            except httpx.HTTPError as exc:
                answers.append((key, -1, time.monotonic(), type(exc).__name__))
            if answers[-1][1] != 200:
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=30) as client:
        senders = [asyncio.create_task(sender(n, client)) for n in range(8)]
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _lines(counts) < 100:
                await asyncio.sleep(0.1)
            await asyncio.to_thread(_replica.kill_postmaster, primary)  # type: ignore[arg-type]
            killed_at = time.monotonic()
            if reach == "moving-address":
                relay.move(None)
            await asyncio.to_thread(_replica.promote, standby)  # type: ignore[arg-type]
            if reach == "moving-address":
                relay.move(standby.port)  # type: ignore[attr-defined]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                ok = [a[2] for a in answers if a[1] == 200 and a[2] > killed_at]
                if ok and time.monotonic() - min(ok) > 3.0:
                    break
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.gather(*senders)
    return answers, killed_at


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
