"""The raw database limit: how many single-row ``INSERT ... ON CONFLICT DO NOTHING`` commits
per second the local PostgreSQL takes from 8 clients (pgbench, custom script).

    .venv/bin/python bench/pgbench_limit.py [--seconds 30] [--clients 8]

A fresh database holds one table shaped like the events' idempotency key (unique on
``(source, key)``); each transaction is one autocommitted insert of a random key, as a
webhook receiver that commits every delivery on its own would do. This is the ceiling for an
ingest path that commits each delivery separately; group commit can pass it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as c

SCRIPT = """\\set k random(1, 2000000000)
INSERT INTO deliveries (source, idempotency_key) VALUES ('billing', 'k' || :k) ON CONFLICT DO NOTHING;
"""


def pgbench(db: c.Database, seconds: int, clients: int, threads: int) -> dict[str, Any]:
    with db.connect() as conn:
        conn.execute("CREATE TABLE deliveries (id bigserial PRIMARY KEY, source text NOT NULL, "
                     "idempotency_key text NOT NULL, received_at timestamptz NOT NULL DEFAULT now(), "
                     "UNIQUE (source, idempotency_key))")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(SCRIPT)
        script = f.name
    load_before = c.loadavg()
    out = subprocess.run(
        ["pgbench", "-n", "-f", script, "-c", str(clients), "-j", str(threads), "-T", str(seconds),
         "-r", db.url], check=True, capture_output=True, text=True,
    ).stdout
    Path(script).unlink()
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))  # type: ignore[union-attr]
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    return {"tps": round(tps, 1), "latency_avg_ms": float(lat.group(1)) if lat else None,
            "clients": clients, "threads": threads, "seconds": seconds,
            "loadavg_before": load_before, "loadavg_after": c.loadavg(),
            "rows": int(db.scalar("SELECT count(*) FROM deliveries"))}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    c.log("pgbench: single-row INSERT ... ON CONFLICT DO NOTHING")
    with c.fresh_database("postgres", "bench_pgbench") as db:
        r = pgbench(db, args.seconds, args.clients, args.threads)
    c.log(f"pgbench: {r['tps']} tps")
    c.write_result("pgbench", {"postgres": r})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
