"""Several hosts on one PostgreSQL host: the drain rate with 1, 2 and 3 worker hosts (the
scaling curve) and the ingest rate with 1 and 2 ingress hosts.

Uses the hosts harness of ``tests/cluster/`` (Linux network namespaces on a private switch, a
private PostgreSQL cluster on the ``db`` host, the real CLI on the others, deliveries signed and
sent over HTTP from the ``client`` host). Needs root and iproute2.

    sudo CI=true .venv/bin/python bench/hosts.py [--n 10000]

For each worker count: N deliveries are ingested through one ingress host (the 1-ingress
figure), then ``k`` workers, one per host, are started and the drain is timed from the first
handler run to the last execution finished. Then N more deliveries are ingested through two
ingress hosts at once (half each). The handler is ``tests/chaos/apps/counted.py`` with no
sleep (one file append). Every host shares the machine's cores: the figures say how the work
spreads, not what N machines would do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import _support  # noqa: E402
from tests.cluster import _hosts  # noqa: E402

APP = str(_support.APPS / "counted.py")


async def _succeeded(h: _hosts.Hosts) -> int:
    conn = await h.connect()
    try:
        return int(await conn.fetchval("SELECT count(*) FROM executions WHERE status = 'succeeded'"))
    finally:
        await conn.close()


async def _ingest(h: _hosts.Hosts, bases: list[str], keys: list[str]) -> float:
    t0 = time.monotonic()
    answers = await h.send(bases, keys, concurrency=32)
    elapsed = time.monotonic() - t0
    bad = sum(1 for v in answers.values() if v != 200)
    assert bad == 0, f"{bad} deliveries not answered 200"
    return len(keys) / elapsed


async def _drain(h: _hosts.Hosts, k: int, n: int, expected: int, counts: Path) -> float:
    """Start ``k`` workers (hosts w1..wk) and time the drain of ``n`` executions."""
    procs = [h.worker(f"w{i}", APP, h.host_env(COUNT_FILE=str(counts))) for i in range(1, k + 1)]
    try:
        while not os.path.exists(counts):  # noqa: ASYNC110, ASYNC240 - a file another process writes
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        while await _succeeded(h) < expected:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.05)
        return n / (time.monotonic() - t0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


async def run(n: int, log_dir: Path) -> list[str]:
    lines: list[str] = []
    with _hosts.hosts(log_dir, "in1", "in2", "w1", "w2", "w3") as h:
        h.env = {"COUNT_SLEEP_MS": "0", "SOLO_OS_POLL_INTERVAL": "0.5"}
        in1 = h.serve("in1", APP, h.host_env(COUNT_FILE=os.devnull))
        in2 = h.serve("in2", APP, h.host_env(COUNT_FILE=os.devnull))
        done = 0
        for k in (1, 2, 3):
            rate_in = await _ingest(h, [in1], [f"k{k}-{i}" for i in range(n)])
            counts = log_dir / f"runs-{k}.txt"
            done += n
            rate = await _drain(h, k, n, done, counts)
            lines.append(f"ingest, 1 ingress host: {rate_in:,.0f} deliveries/s")
            lines.append(f"drain, {k} worker host(s): {rate:,.0f} executions/s")
            print(lines[-2], lines[-1], sep="\n", flush=True)
        rate2 = await _ingest(h, [in1, in2], [f"two-{i}" for i in range(n)])
        lines.append(f"ingest, 2 ingress hosts: {rate2:,.0f} deliveries/s")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10000, help="deliveries per step")
    args = parser.parse_args()
    os.environ.setdefault("CI", "true")
    with tempfile.TemporaryDirectory(prefix="solo_bench_hosts_") as tmp:
        print(f"bench/hosts.py --n {args.n}: {os.cpu_count()} CPUs shared by every host", flush=True)
        asyncio.run(run(args.n, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
