"""Drain: 50,000 pending no-op executions, one ``solo-os worker`` command: executions/s.

    .venv/bin/python bench/drain.py [--db postgres,sqlite] [--jobs 50000]
        [--concurrency default,200] [--processes 1,auto]

The executions (each with its event, as ingest would have stored them) are seeded by SQL
(``_seed.py``) before the worker starts; ``solo-os worker bench/apps/noop.py`` (default
settings, LOG_LEVEL=info with its log written to a file) then runs them, with
``--processes N`` (``auto``: one process per core) where asked.
The rate is timed by polling the count of pending and running executions every 100 ms, from
the first poll that sees progress to the one that sees none left (start-up excluded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import _common as c
import _seed

APP = "bench/apps/noop.py"


def remaining(db: c.Database) -> int:
    # Both partial indexes (due, leases) serve this, so it stays cheap on a big history.
    return int(db.scalar("SELECT (SELECT count(*) FROM executions WHERE status = 'pending') + "
                         "(SELECT count(*) FROM executions WHERE status = 'running')") or 0)


def cpu_seconds_with_children(pid: int) -> float:
    """CPU seconds of ``pid`` and its child processes (``worker --processes N``)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return c.cpu_seconds(pid) + sum(c.cpu_seconds(int(kid)) for kid in children)


def drain_once(db: c.Database, jobs: int, label: str = "drain", concurrency: int | None = None,
               processes: str = "1", **env: str) -> dict[str, Any]:
    """Seed ``jobs`` pending executions into ``db`` (migrated) and time one worker on them
    (``concurrency``: the worker's ``--concurrency``, else its default; ``processes``: its
    ``--processes``)."""
    seconds = _seed.seed(db, "pending", jobs)
    logdir = c.tmpdir(label)
    load_before = c.loadavg()
    args = [c.SOLO_OS, "worker", APP]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    if processes != "1":
        args += ["--processes", processes]
    with c.process(args, c.solo_env(db, **env), logdir / "worker.log") as p:
        cpu: list[float] = []  # the worker's CPU seconds: first poll that saw progress, last

        def left() -> int:
            n = remaining(db)
            if n < jobs and (len(cpu) < 1 or n == 0):
                cpu.append(cpu_seconds_with_children(p.pid))
            return n

        r = c.time_drain(left, jobs, proc=p)
    # CPU of the worker alone (all its processes, user + system) per execution, over the timed
    # part: what a change to the worker bought, whatever the database or the machine did.
    r["worker_cpu_us"] = round((cpu[-1] - cpu[0]) / max(1, r["timed_jobs"]) * 1e6, 1)
    succeeded = int(db.scalar("SELECT count(*) FROM executions WHERE status = 'succeeded' "
                              "AND handler = 'noop'") or 0)
    r.update(concurrency=concurrency or "default", processes=processes, seed_s=round(seconds, 2),
             succeeded=succeeded, loadavg_before=load_before,
             loadavg_after=c.loadavg(), worker_log=str(logdir / "worker.log"))
    return r


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="postgres,sqlite")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--concurrency", default="default,200",
                   help="worker --concurrency values to run (comma-separated; 'default' = unset); "
                   "the fastest is the result, every run is kept")
    p.add_argument("--processes", default="1",
                   help="worker --processes values to run (comma-separated: a number or 'auto')")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"settings": vars(args)}
    failed = False
    for kind in args.db.split(","):
        runs = []
        for procs in args.processes.split(","):
            for conc in args.concurrency.split(","):
                n = None if conc == "default" else int(conc)
                c.log(f"drain on {kind}, processes {procs}, concurrency {conc}")
                with c.fresh_database(kind, "bench_drain") as db:
                    c.db_upgrade(db)
                    r = drain_once(db, args.jobs, concurrency=n, processes=procs)
                failed |= r["succeeded"] < args.jobs
                c.log(f"drain {kind} processes {procs} concurrency {conc}: {r['per_s']}/s, "
                      f"worker CPU {r['worker_cpu_us']} us/execution ({r['succeeded']} succeeded)")
                runs.append(r)
        best = max(runs, key=lambda x: x["per_s"])
        results[kind] = {**best, "all_settings": [
            {"processes": x["processes"], "concurrency": x["concurrency"], "per_s": x["per_s"]}
            for x in runs]}
    c.write_result("drain", results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
