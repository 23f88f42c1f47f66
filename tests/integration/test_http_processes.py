"""Three worker processes share one rate limit and one pause, measured at the server they call.

Each test starts a recording HTTP server, three ``solo-os worker`` processes running
``tests/apps/http_app.py`` (rate 20/s, burst 5 for the server's host:port), and ingress in
this process; then it posts many ``charge`` events, each of which makes one POST to the
server, and reads the arrival times the server recorded. Runs on SQLite (three processes on
one file) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
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
from tests.apps import http_app

APP = str(Path(http_app.__file__))
SOLO_OS = str(Path(sys.executable).parent / "solo-os")
RATE, BURST = 20, 5
pytestmark = pytest.mark.slow


@pytest.fixture
def target() -> Iterator[http_app.RemoteTarget]:
    server = http_app.RemoteTarget()  # its own process: precise arrival times
    yield server
    server.stop()


@contextmanager
def workers(n: int, env: dict[str, str], log_dir: Path) -> Iterator[list[Path]]:
    procs: list[subprocess.Popen[bytes]] = []
    paths = [log_dir / f"worker-{i}.log" for i in range(n)]
    files = [open(p, "wb") for p in paths]  # noqa: SIM115 - closed below
    try:
        for f in files:
            procs.append(
                subprocess.Popen([SOLO_OS, "worker", APP], env=env, stdout=f, stderr=subprocess.STDOUT)
            )
        yield paths
        assert all(p.poll() is None for p in procs), "a worker died: " + " | ".join(
            p.read_text()[-2000:] for p in paths
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in files:
            f.close()


async def started(paths: list[Path], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all("worker.started" in p.read_text(errors="replace") for p in paths):
        if time.monotonic() > deadline:
            raise AssertionError("workers did not start: " + " | ".join(p.read_text()[-2000:] for p in paths))
        await asyncio.sleep(0.1)


async def run_charges(
    database_url: str, target: http_app.RemoteTarget, tmp_path: Path, count: int
) -> tuple[list[http_app.Seen], list[Any]]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        BILLING_WEBHOOK_SECRET=helpers.SECRET,
        TARGET_URL=target.url,
        RATE=str(RATE),
        BURST=str(BURST),
        LOG_LEVEL="info",
        SOLO_OS_POLL_INTERVAL="0.1",
        SOLO_OS_WORKER_CONCURRENCY="16",  # 3 x 16 < the events: every process gets work
    )
    app = http_app.make_app(target.url, rate=RATE, burst=BURST)
    async with helpers.running(app, database_url, roles=("serve",)) as h:
        sem = asyncio.Semaphore(20)

        async def send(i: int) -> None:
            async with sem:
                r = await h.post("billing", {"n": i}, event_type="charge", key=f"c-{i}")
                assert r.status_code == 200

        # Everything is queued before the workers start, so this process stays quiet
        # while the calls are measured.
        await asyncio.gather(*(send(i) for i in range(count)))
        with workers(3, env, tmp_path) as logs:
            await started(logs)

            async def done() -> bool:
                c = await h.store.counts()
                return c["succeeded"] + c["dead"] >= count

            await helpers.eventually(done, timeout=90, interval=0.2)
        executions = await h.store.list_executions(store_mod.Filters(limit=0))
    return target.requests("/charge"), executions


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_three_worker_processes_stay_within_the_declared_rate(
    database_url: str, target: http_app.RemoteTarget, tmp_path: Path
) -> None:
    count = 100
    seen, executions = await run_charges(database_url, target, tmp_path, count)
    assert {x.status for x in executions} == {"succeeded"} and len(executions) == count
    # one call per charge; a repeat (a worker losing its lease) would carry the same key
    assert len({s.headers["idempotency-key"] for s in seen}) == count
    assert len({s.headers["x-pid"] for s in seen}) == 3, "all three processes made calls"
    times = sorted(s.at for s in seen)
    # A process's first call blocks its event loop for ~0.1-0.3 s (httpx loads its network
    # backend, the connection opens; longer on a busy machine), so the calls it took tokens
    # for meanwhile reach the server together: arrivals are bunched by that much. Calls of
    # warm processes keep the bucket's bound of burst + rate * T in any window T exactly
    # (+1 for a few ms of network jitter).
    cold = 0.3
    first: dict[str, float] = {}
    for s in sorted(seen, key=lambda s: s.at):
        first.setdefault(s.headers["x-pid"], s.at)
    steady = sorted(s.at for s in seen if s.at >= first[s.headers["x-pid"]] + cold)
    assert len(steady) >= count * 0.7, "most calls are made by warm processes"
    for window in (0.25, 0.5, 1.0, 2.0):
        worst = most_in_any_window(steady, window)
        assert worst <= BURST + RATE * window + 1, f"{worst} calls arrived within {window}s"
    # and the limit did bite: at 20/s, 100 calls take (100 - 5) / 20 = 4.75 s (less the
    # cold start's bunching); unlimited, well under a second
    span = times[-1] - times[0]
    assert span >= (count - BURST) / RATE * 0.75, f"{count} calls took only {span:.2f}s"


async def test_a_429_with_retry_after_stops_every_worker_until_then(
    database_url: str, target: http_app.RemoteTarget, tmp_path: Path
) -> None:
    # The 41st call is refused, about 2 s in: every process is warm by then, so calls that
    # held a token when the pause was stored land within a few ms, not a cold start later.
    target.script("/charge", *([(200, {})] * 40), (429, {"Retry-After": "2"}))
    seen, executions = await run_charges(database_url, target, tmp_path, 70)
    assert {x.status for x in executions} == {"succeeded"}
    assert {x.attempts for x in executions} == {1}, "the 429 was waited out inside the call"
    assert len({s.headers["idempotency-key"] for s in seen}) == 70
    refused = seen[40]  # the server's record order is the order its script was used in
    repeats = [s for s in seen if s.headers["idempotency-key"] == refused.headers["idempotency-key"]]
    assert len(repeats) == 2, "the refused call was tried again, under the same key"
    t429 = refused.at
    before = [s for s in seen if t429 - 0.3 <= s.at < t429]
    during = [round(s.at - t429, 3) for s in seen if t429 + 0.25 <= s.at < t429 + 1.95]
    after = [s for s in seen if t429 + 1.95 <= s.at < t429 + 3.0]
    assert before, "calls were flowing right before the 429"
    assert during == [], f"calls arrived during the pause, at +{during}s"
    assert len(after) >= 5, "calls resumed after the pause"
    assert len({s.headers["x-pid"] for s in after}) >= 2, "more than one process resumed"
