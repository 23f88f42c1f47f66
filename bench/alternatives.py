"""The same workloads on what a user would pick instead, each on its own fresh database.

    .venv/bin/python bench/alternatives.py [--only seed,procrastinate,pgqueuer,celery]
                                           [--jobs 50000] [--requests 30000] [--db postgres,sqlite]

- ``seed``: ingest into the seed article's design ported literally (``baselines/seed_port.py``:
  FastAPI + SQLAlchemy, SELECT then INSERT, processing inside the request), served by uvicorn
  with its defaults (one process; uvicorn's own runner picks uvloop and httptools), loaded
  exactly like ``ingest.py``. PostgreSQL and SQLite.
- ``procrastinate``: 50,000 no-op jobs deferred in bulk, then one ``procrastinate worker``
  process. PostgreSQL.
- ``pgqueuer``: 50,000 no-op jobs enqueued in bulk, then one worker process running
  ``PgQueuer.run`` (what ``pgq run`` does; the CLI itself fails to start with the installed
  typer). PostgreSQL.
- ``celery``: 50,000 no-op tasks on Redis (``acks_late``), then one ``celery worker``
  process (prefork pool, as many children as cores: Celery's default).

Drains are timed like ``drain.py``: the count of jobs not yet done, polled every 100 ms, from
the first poll that sees progress to the one that sees none left. Each system runs at the
worker settings listed in ``SETTINGS`` (its defaults, and where its default concurrency is 1,
also a higher one; the best is reported).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import _common as c
import ingest as ingest_mod

SETTINGS: dict[str, list[list[str]]] = {
    "procrastinate": [["--concurrency", "1"], ["--concurrency", "10"]],
    "pgqueuer": [["--batch-size", "10"], ["--batch-size", "100"]],
    "celery": [["--pool", "prefork"], ["--pool", "threads", "--concurrency", "32"]],
}


# --- seed port (ingest) ------------------------------------------------------------------------


def seed_ingest(kind: str, requests: int, concurrency: int, dup: float) -> dict[str, Any]:
    with c.fresh_database(kind, "bench_seedport") as db:
        sys.path.insert(0, str(c.BENCH / "baselines"))
        env = c.solo_env(db)
        subprocess.run(
            [c.PYTHON, "-c", "import asyncio, seed_port; asyncio.run(seed_port.create_schema())"],
            env={**env, "PYTHONPATH": str(c.BENCH / "baselines")}, check=True, cwd=c.ROOT,
        )
        server = lambda port: [  # noqa: E731
            str(c.VENV_BIN / "uvicorn"), "--app-dir", str(c.BENCH / "baselines"), "seed_port:app",
            "--host", "127.0.0.1", "--port", str(port),
        ]
        return ingest_mod.ingest_once(
            db, requests=requests, concurrency=concurrency, dup=dup, server=server,
            count_sql="SELECT count(*) FROM executions", label="seedport",
        )


# --- procrastinate -------------------------------------------------------------------------------


def procrastinate_drain(jobs: int, worker_args: list[str]) -> dict[str, Any]:
    with c.fresh_database("postgres", "bench_procrastinate") as db:
        env = {**os.environ, "PROCRASTINATE_DSN": db.url, "PYTHONPATH": str(c.ROOT)}
        code = (
            "import sys\n"
            "from bench.baselines.procrastinate_app import app, noop\n"
            "with app.open():\n"
            "    app.schema_manager.apply_schema()\n"
            f"    for i in range(0, {jobs}, 5000):\n"
            f"        noop.batch_defer(*[{{}}] * min(5000, {jobs} - i))\n"
        )
        t = time.monotonic()
        subprocess.run([c.PYTHON, "-c", code], env=env, check=True, cwd=c.ROOT)
        seeded = time.monotonic() - t

        def remaining() -> int:
            return int(db.scalar("SELECT count(*) FROM procrastinate_jobs "
                                 "WHERE status IN ('todo', 'doing')") or 0)

        assert remaining() == jobs
        load_before = c.loadavg()
        args = [str(c.VENV_BIN / "procrastinate"), "--app", "bench.baselines.procrastinate_app.app",
                "worker", *worker_args]
        with c.process(args, env, c.tmpdir("procrastinate") / "worker.log") as p:
            r = c.time_drain(remaining, jobs, proc=p)
        done = int(db.scalar("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'") or 0)
        return {**r, "succeeded": done, "seed_s": round(seeded, 2), "worker_args": worker_args,
                "loadavg_before": load_before, "loadavg_after": c.loadavg()}


# --- pgqueuer ------------------------------------------------------------------------------------


def pgqueuer_drain(jobs: int, worker_args: list[str]) -> dict[str, Any]:
    with c.fresh_database("postgres", "bench_pgqueuer") as db:
        env = {**os.environ, "PGDSN": db.url, "PYTHONPATH": str(c.ROOT)}
        pgq = str(c.VENV_BIN / "pgq")
        subprocess.run([pgq, "install"], env=env, check=True, cwd=c.ROOT, stdout=subprocess.DEVNULL)

        async def enqueue() -> None:
            import asyncpg
            from pgqueuer import AsyncpgDriver, Queries

            conn = await asyncpg.connect(db.url)
            try:
                q = Queries(AsyncpgDriver(conn))
                for i in range(0, jobs, 5000):
                    n = min(5000, jobs - i)
                    await q.enqueue(["noop"] * n, [None] * n, [0] * n)
            finally:
                await conn.close()

        t = time.monotonic()
        asyncio.run(enqueue())
        seeded = time.monotonic() - t

        def remaining() -> int:
            return int(db.scalar("SELECT count(*) FROM pgqueuer") or 0)

        assert remaining() == jobs
        load_before = c.loadavg()
        args = [c.PYTHON, "-m", "bench.baselines.pgqueuer_app", *worker_args]
        with c.process(args, env, c.tmpdir("pgqueuer") / "worker.log") as p:
            r = c.time_drain(remaining, jobs, proc=p)
        done = int(db.scalar("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'") or 0)
        return {**r, "succeeded": done, "seed_s": round(seeded, 2), "worker_args": worker_args,
                "loadavg_before": load_before, "loadavg_after": c.loadavg()}


# --- celery --------------------------------------------------------------------------------------


def celery_drain(jobs: int, worker_args: list[str]) -> dict[str, Any]:
    import redis

    queue = f"bench_{uuid.uuid4().hex[:10]}"
    broker = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/11")
    r = redis.Redis.from_url(broker)
    env = {**os.environ, "CELERY_BROKER_URL": broker, "CELERY_QUEUE": queue, "PYTHONPATH": str(c.ROOT)}
    code = (
        "from bench.baselines.celery_app import app\n"
        "with app.producer_or_acquire() as producer:\n"
        f"    for _ in range({jobs}):\n"
        "        app.send_task('noop', producer=producer)\n"
    )
    try:
        t = time.monotonic()
        subprocess.run([c.PYTHON, "-c", code], env=env, check=True, cwd=c.ROOT)
        seeded = time.monotonic() - t

        def remaining() -> int:
            # Queued, plus delivered but not yet acknowledged (acks_late: acked after the run).
            return int(r.llen(queue)) + int(r.hlen("unacked"))

        assert remaining() == jobs, remaining()
        load_before = c.loadavg()
        args = [str(c.VENV_BIN / "celery"), "-A", "bench.baselines.celery_app", "worker", "-Q", queue,
                "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
                *worker_args]
        with c.process(args, env, c.tmpdir("celery") / "worker.log") as p:
            res = c.time_drain(remaining, jobs, proc=p)
        return {**res, "succeeded": jobs, "seed_s": round(seeded, 2), "worker_args": worker_args,
                "loadavg_before": load_before, "loadavg_after": c.loadavg()}
    finally:
        r.delete(queue, "unacked", "unacked_index", f"_kombu.binding.{queue}")
        r.close()


DRAINS = {"procrastinate": procrastinate_drain, "pgqueuer": pgqueuer_drain, "celery": celery_drain}


def best_drain(name: str, jobs: int) -> dict[str, Any]:
    """Every setting in ``SETTINGS[name]``; the fastest is the result, all are kept."""
    runs = []
    for worker_args in SETTINGS[name]:
        c.log(f"{name} drain {' '.join(worker_args)}")
        run = DRAINS[name](jobs, worker_args)
        c.log(f"{name} {' '.join(worker_args)}: {run['per_s']}/s")
        runs.append(run)
    best = max(runs, key=lambda x: x["per_s"])
    return {**best, "all_settings": [{"worker_args": x["worker_args"], "per_s": x["per_s"]} for x in runs]}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="seed,procrastinate,pgqueuer,celery")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--requests", type=int, default=30_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--dup", type=float, default=0.1)
    p.add_argument("--db", default="postgres,sqlite", help="databases for the seed port")
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    previous = c.RESULTS / "alternatives.json"
    if previous.exists():
        # A partial run (--only) keeps the other systems' figures from the last run.
        import json

        kept = json.loads(previous.read_text())
        results = {k: v for k, v in kept.items() if k not in ("benchmark", "at", "machine", "settings")}
    results["settings"] = vars(args)
    for name in args.only.split(","):
        if name == "seed":
            for kind in args.db.split(","):
                c.log(f"seed port ingest on {kind}")
                res = seed_ingest(kind, args.requests, args.concurrency, args.dup)
                res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                results[f"seed-{kind}"] = res
                c.write_result("alternatives", results)  # after each system: a crash keeps the rest
                c.log(f"seed port {kind}: {res['deliveries_per_s']}/s p99 {res['latency_ms']['p99']} ms "
                      f"status {res['status']} stored {res['stored_events']} of {res['distinct_keys']}")
        else:
            results[name] = best_drain(name, args.jobs)
            results[name]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            c.write_result("alternatives", results)
    c.write_result("alternatives", results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
