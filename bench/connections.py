"""How many solo-os processes one default PostgreSQL serves: measured, not computed.

A private cluster (``tests/chaos/_private.py``: initdb's defaults, ``max_connections = 100``,
3 of them reserved for superusers) with an ordinary role ``solo`` owning the database, as an
application's role would. ``serve`` and ``worker`` processes are started one by one (a
``serve`` and a ``worker`` first, then a worker, a serve, ... alternately), each with the
default settings unless ``--pool``/``--admin-pool`` are given. After each start the load is
``--n`` signed deliveries spread over every ``serve`` (32 at a time) and drained by every
worker; then the connections each process holds are counted from ``pg_stat_activity`` (the
backend's client port, mapped to the process that owns that socket). It stops at the first
step where a process cannot connect (it exits 4 after ``SOLO_OS_DB_CONNECT_TIMEOUT``), a
delivery is not answered 200, or the drain does not finish.

    CI=true .venv/bin/python bench/connections.py [--n 300] [--pool 10] [--admin-pool 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import _cluster, _private, _support  # noqa: E402

APP = str(_support.APPS / "counted.py")


async def _database(c: _cluster.Cluster) -> str:
    """Role ``solo`` (no superuser) owning database ``bench``, upgraded; solo's URL."""
    admin = await asyncpg.connect(c.url(), timeout=10)
    try:
        await admin.execute("CREATE ROLE solo LOGIN")
        await admin.execute("CREATE DATABASE bench OWNER solo")
    finally:
        await admin.close()
    url = f"postgresql://solo@127.0.0.1:{c.port}/bench"
    done = await asyncio.create_subprocess_exec(
        _support.SOLO_OS, "db", "upgrade", env=_support.env_for(url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    return url


def _held(pids: list[int], port: int, client_ports: list[int]) -> dict[int, int]:
    """Connections to the server at ``port`` each process holds (by the client ports the
    server lists in ``pg_stat_activity``)."""
    owner: dict[int, int] = {}
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == port:
                    owner[conn.laddr.port] = pid
        except psutil.NoSuchProcess:
            continue
    counts = Counter(owner.get(p, 0) for p in client_ports)
    return {pid: counts.get(pid, 0) for pid in pids}


async def _send(bases: list[str], keys: list[str]) -> Counter[int]:
    """Deliver one invoice per key, round robin over ``bases``, 32 at a time; the statuses."""
    sem = asyncio.Semaphore(32)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int, key: str) -> int:
            async with sem:
                try:
                    return (await _support.post(client, bases[i % len(bases)], key)).status_code
                except httpx.HTTPError:
                    return 0

        return Counter(await asyncio.gather(*(one(i, k) for i, k in enumerate(keys))))


async def _drained(mon: asyncpg.Connection, timeout: float = 60.0) -> float | None:
    """Seconds until no execution is left to run; None if not within ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        left = await mon.fetchval("SELECT count(*) FROM executions WHERE status <> 'succeeded'")
        if left == 0:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def _start(procs: _support.Procs, kind: str, env: dict[str, str]) -> tuple[Any, str | None]:
    """Start one ``serve`` or ``worker``; (process, its base URL for a serve) or raise when
    it exits before it is up."""
    if kind == "serve":
        proc, base = await asyncio.to_thread(procs.serve, APP, env)
        return proc, base
    proc = procs.worker(APP, env)
    log = procs.log_dir / f"worker-{len(procs.all) - 1}.log"
    while '"event":"runtime.started"' not in (log.read_text(errors="replace") if log.exists() else ""):
        if proc.poll() is not None:
            raise AssertionError(f"solo-os worker exited with {proc.returncode}")
        await asyncio.sleep(0.1)
    return proc, None


async def _step(
    procs: _support.Procs, kind: str, env: dict[str, str], state: dict[str, Any]
) -> str | None:
    """Start one more process and put the load through; why it failed, or None."""
    try:
        proc, base = await _start(procs, kind, env)
    except AssertionError as exc:
        return f"the new {kind} did not start: {exc}"
    state["kinds"][proc.pid] = kind
    if base is not None:
        state["bases"].append(base)
    if not state["bases"] or "worker" not in state["kinds"].values():
        return None
    step = len(state["kinds"])
    answers = await _send(state["bases"], [f"s{step}-{i}" for i in range(state["n"])])
    if set(answers) != {200}:
        return f"deliveries answered {dict(answers)}"
    if await _drained(state["mon"]) is None:
        return "the drain did not finish within 60 s"
    return None


async def _census(c: _cluster.Cluster, state: dict[str, Any]) -> dict[str, Any]:
    rows = await state["mon"].fetch(
        "SELECT client_port FROM pg_stat_activity WHERE usename = 'solo' AND client_port IS NOT NULL"
    )
    held = _held(list(state["kinds"]), c.port, [r["client_port"] for r in rows])
    by_kind: dict[str, list[int]] = {"serve": [], "worker": []}
    for pid, n in held.items():
        by_kind[state["kinds"][pid]].append(n)
    return {"processes": len(held), "at_server": len(rows), "serve": by_kind["serve"],
            "worker": by_kind["worker"]}


async def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any] | None:
    extra = {"COUNT_SLEEP_MS": "20", "SOLO_OS_DB_CONNECT_TIMEOUT": "10", "LOG_LEVEL": "info"}
    if args.pool:
        extra["SOLO_OS_DB_POOL_SIZE"] = str(args.pool)
    if args.admin_pool:
        extra["SOLO_OS_DB_ADMIN_POOL_SIZE"] = str(args.admin_pool)
    last: dict[str, Any] | None = None
    with _private.cluster() as c, _support.processes(log_dir) as procs:
        url = await _database(c)
        env = {**_support.env_for(url, COUNT_FILE=os.devnull), **extra}
        mon = await asyncpg.connect(c.url("bench"), timeout=10)  # a superuser's reserved slot
        state: dict[str, Any] = {"kinds": {}, "bases": [], "mon": mon, "n": args.n}
        kinds = ["serve", "worker"] + ["worker", "serve"] * 100
        try:
            for kind in kinds[: args.max]:
                failed = await _step(procs, kind, env, state)
                census = await _census(c, state)
                print(_line(census, failed), flush=True)
                if failed:
                    print(f"stopped: {failed}", flush=True)
                    break
                last = census
        finally:
            await mon.close()
    return last


def _line(census: dict[str, Any], failed: str | None) -> str:
    def span(xs: list[int]) -> str:
        return f"{min(xs)}-{max(xs)}" if xs else "-"

    mark = "FAILED" if failed else "ok"
    return (f"{census['processes']:3d} processes ({len(census['serve'])} serve, "
            f"{len(census['worker'])} worker): {census['at_server']} connections at the server; "
            f"held per serve {span(census['serve'])}, per worker {span(census['worker'])} [{mark}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="deliveries per step")
    parser.add_argument("--pool", type=int, default=0, help="SOLO_OS_DB_POOL_SIZE (default: unset)")
    parser.add_argument("--admin-pool", type=int, default=0, help="SOLO_OS_DB_ADMIN_POOL_SIZE")
    parser.add_argument("--max", type=int, default=60, help="stop after this many processes")
    args = parser.parse_args()
    os.environ.setdefault("CI", "true")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="solo_bench_conn_") as tmp:
        print(f"bench/connections.py --n {args.n} --pool {args.pool or 'default'} "
              f"--admin-pool {args.admin_pool or 'default'}; load {os.getloadavg()[0]:.1f}", flush=True)
        last = asyncio.run(run(args, Path(tmp)))
    if last is not None:
        print(f"served: {last['processes']} processes, {last['at_server']} connections "
              f"({time.monotonic() - t0:.0f} s; load {os.getloadavg()[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
