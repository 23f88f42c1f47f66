"""History: ingest and drain rates with millions of finished executions already stored,
against the same workloads on empty tables.

    .venv/bin/python bench/history.py [--db postgres,sqlite] [--rows 5000000]
                                      [--requests 30000] [--jobs 50000]

``--rows`` finished executions (each with its event and its succeeded attempt, as solo-os
itself writes them: one row made through the store, cloned by ``INSERT ... SELECT`` over
``generate_series``, see ``_seed.py``) are stored first; then the ingest workload of
``ingest.py`` and the drain workload of ``drain.py`` (drain first) run on that database. The same two
workloads run on a fresh empty database right before, so each pair is measured minutes apart.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import _common as c
import _seed
import drain as drain_mod
import ingest as ingest_mod


def measure(kind: str, rows: int, requests: int, jobs: int, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows}
    with c.fresh_database(kind, "bench_history") as db:
        c.db_upgrade(db)
        if rows:
            c.log(f"history {kind}: seeding {rows:,} finished executions")
            out["seed_s"] = round(_seed.seed(db, "history", rows), 1)
            out["database_size"] = _size(db)
        # Drain first: the ingest leaves executions of the example's handlers pending, which
        # the no-op worker would otherwise find (and count) as work.
        c.log(f"history {kind} rows={rows:,}: drain")
        out["drain"] = drain_mod.drain_once(db, jobs, label="history")
        c.log(f"history {kind} rows={rows:,}: ingest")
        out["ingest"] = ingest_mod.ingest_once(db, requests=requests, concurrency=concurrency, dup=0.1,
                                               label="history")
    c.log(f"history {kind} rows={rows:,}: ingest {out['ingest']['deliveries_per_s']}/s, "
          f"drain {out['drain']['per_s']}/s")
    return out


def _size(db: c.Database) -> str:
    if db.kind == "postgres":
        return str(db.scalar("SELECT pg_size_pretty(pg_database_size(current_database()))"))
    assert db.path is not None
    return f"{db.path.stat().st_size / 1024**3:.2f} GB"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="postgres,sqlite")
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--requests", type=int, default=30_000)
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args(argv)
    results: dict[str, Any] = {"settings": vars(args)}
    ok = True
    for kind in args.db.split(","):
        empty = measure(kind, 0, args.requests, args.jobs, args.concurrency)
        full = measure(kind, args.rows, args.requests, args.jobs, args.concurrency)
        ok &= all(x["ingest"]["check_stored_equals_distinct"] for x in (empty, full))
        results[kind] = {
            "empty": empty,
            "history": full,
            "ingest_ratio": round(
                full["ingest"]["deliveries_per_s"] / empty["ingest"]["deliveries_per_s"], 3),
            "drain_ratio": round(full["drain"]["per_s"] / empty["drain"]["per_s"], 3),
        }
    c.write_result("history", results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
