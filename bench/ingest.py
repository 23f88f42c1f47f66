"""Ingest: signed deliveries over real HTTP to ``solo-os serve``, 10% repeated keys.

    .venv/bin/python bench/ingest.py [--db postgres,sqlite] [--requests 30000] [--concurrency 64]
                                     [--workers 1] [--rounds 1] [--payload-index keep,drop]

For each database: a fresh database, ``solo-os db upgrade``, ``solo-os serve
examples/billing/app.py`` as a subprocess (default settings, but ``--workers`` where given:
LOG_LEVEL=info with its JSON log written to a file), a short warm-up, then the load
generator (``_load.py``, its own process) sends ``--requests`` deliveries over
``--concurrency`` keep-alive connections.
Reports deliveries/s, latency p50/p99, and checks that the events stored equal the distinct
keys that were answered 2xx (and that no other answer than 200 was given).

``--workers 1,2`` measures each count in turn, ``--rounds`` times over (A/B pairs in one
sitting: 1, 2, 1, 2, ...); each run has its own fresh database. ``--payload-index keep,drop``
does the same with the payload-search trigram index as migrated and dropped after the migration
(PostgreSQL; ``DROP INDEX ix_events_payload_trgm``, what docs/dashboard.md says an operator may
do): what that index costs ingest, measured in turn.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import _common as c

EXAMPLE = "examples/billing/app.py"


def solo_server(app: str = EXAMPLE, workers: int | None = None) -> Any:
    """``solo-os serve app``; ``--workers N`` when ``workers`` is given (else its default)."""
    extra = ["--workers", str(workers)] if workers is not None else []
    return lambda port: [c.SOLO_OS, "serve", app, "--port", str(port), *extra]


def ingest_once(
    db: c.Database, *, requests: int, concurrency: int, dup: float,
    server: Any = None, count_sql: str = "SELECT count(*) FROM events",
    warmup: int = 500, label: str = "ingest",
) -> dict[str, Any]:
    """Start ``server(port)`` (default ``solo-os serve`` of the example) on ``db`` (already
    migrated) and load it; returns the figures. ``count_sql`` counts the stored deliveries."""
    logdir = c.tmpdir(label)
    port = c.free_port()
    args = (server or solo_server())(port)
    with c.process(args, c.solo_env(db), logdir / "server.log") as proc:
        base = f"http://127.0.0.1:{port}"
        c.wait_http(f"{base}/readyz", proc=proc)
        url = f"{base}/webhooks/billing"
        if warmup:
            c.run_load(["closed", "--url", url, "--secret", c.SECRET, "--requests", str(warmup),
                        "--concurrency", "8", "--dup", "0", "--key-prefix", "warmup"])
        before = int(db.scalar(count_sql) or 0)
        load_before = c.loadavg()
        t = time.monotonic()
        report = c.run_load(["closed", "--url", url, "--secret", c.SECRET,
                             "--requests", str(requests), "--concurrency", str(concurrency),
                             "--dup", str(dup)])
        wall = time.monotonic() - t
        stored = int(db.scalar(count_sql) or 0) - before
    ok = report["status"].get("200", 0) == report["requests"]
    return {
        "deliveries_per_s": report["rate_per_s"],
        "latency_ms": report["latency_ms"],
        "requests": report["requests"],
        "status": report["status"],
        "distinct_keys": report["distinct_keys"],
        "distinct_keys_2xx": report["distinct_keys_2xx"],
        "stored_events": stored,
        "check_stored_equals_distinct": stored == report["distinct_keys_2xx"] and ok,
        "client_cpu_s": report["client_cpu_s"],
        "load_wall_s": round(wall, 2),
        "loadavg_before": load_before,
        "loadavg_after": c.loadavg(),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="postgres,sqlite")
    p.add_argument("--requests", type=int, default=30_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--dup", type=float, default=0.1)
    p.add_argument("--workers", default=None,
                   help="serve --workers N; a comma list measures each in turn (default: serve's own)")
    p.add_argument("--rounds", type=int, default=1, help="times each --workers value is measured")
    p.add_argument("--payload-index", default="keep",
                   help="keep, drop, or keep,drop: the trigram index as migrated or dropped (PostgreSQL)")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"settings": vars(args)}
    counts: list[int | None] = [int(w) for w in args.workers.split(",")] if args.workers else [None]
    indexes = args.payload_index.split(",")
    if not set(indexes) <= {"keep", "drop"}:
        p.error("--payload-index takes keep, drop or keep,drop")
    failed = False
    for kind in args.db.split(","):
        runs: list[dict[str, Any]] = []
        shapes = [(w, i) for w in counts for i in (indexes if kind == "postgres" else ["keep"])]
        for rnd in range(args.rounds):
            for workers, index in shapes:
                c.log(f"ingest on {kind}, serve --workers {workers or 'default'}, "
                      f"payload index {index}, round {rnd + 1}")
                with c.fresh_database(kind, "bench_ingest") as db:
                    c.db_upgrade(db)
                    if index == "drop":
                        with db.connect() as conn:
                            conn.execute("DROP INDEX IF EXISTS ix_events_payload_trgm")
                    r = ingest_once(db, requests=args.requests, concurrency=args.concurrency,
                                    dup=args.dup, server=solo_server(workers=workers))
                r["workers"] = workers
                r["payload_index"] = index
                runs.append(r)
                failed |= not r["check_stored_equals_distinct"]
                c.log(f"ingest {kind} workers={workers or 'default'} payload index {index}: "
                      f"{r['deliveries_per_s']}/s "
                      f"p50 {r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms "
                      f"stored={r['stored_events']} distinct={r['distinct_keys_2xx']} "
                      f"load {r['loadavg_before'][0]}")
        results[kind] = runs[0] if len(runs) == 1 else {"runs": runs}
    c.write_result("ingest", results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
