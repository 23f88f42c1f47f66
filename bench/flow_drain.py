"""Flow control's cost and fairness (issue 16), in one run beside the plain drain.

    .venv/bin/python bench/flow_drain.py [--db postgres,sqlite] [--jobs 50000] [--keys 10000]
        [--cold 1000] [--rounds 3] [--repeat 3]

1. Drain: ``--jobs`` pending no-op executions drained by one ``solo-os worker``, first of the
   plain app (bench/apps/noop.py, the same as bench/drain.py), then of the flow app
   (bench/apps/flow_noop.py: ``Concurrency(1, key=...)``) with the executions spread over
   ``--keys`` keys, round-robin. The flow rate is reported as a share of the plain rate:
   ``--rounds`` pairs (plain then flow, taking turns), each pair's share and the median.
2. Fairness: ``--cold`` keys with 5 executions each, drained alone, then again behind one hot
   key holding one execution per cold key (seeded first: received
   earlier). Reported: the p50/p99 delay from the worker's first start to each cold
   execution's start, in both shapes: ``--repeat`` runs of each, alternating (medians, and
   every run).

Seeding is by SQL (``_seed.py``), then ``flow_key`` is set the way ingest writes it
(``<handler>\\x1f<key value>``). Rates are timed like bench/drain.py (``_common.time_drain``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import _common as c
import _seed
from drain import remaining

PLAIN, FLOW = "bench/apps/noop.py", "bench/apps/flow_noop.py"


def _keys(db: c.Database, expr: str, where: str = "TRUE") -> None:
    """Set ``flow_key`` from ``expr`` over ``n`` (the execution's rank by id)."""
    sep = "chr(31)" if db.kind == "postgres" else "char(31)"
    conn = db.connect()
    try:
        conn.execute(
            f"UPDATE executions SET flow_key = 'noop' || {sep} || ({expr}) "
            f"FROM (SELECT id AS rid, row_number() OVER (ORDER BY id) - 1 AS n FROM executions) s "
            f"WHERE s.rid = executions.id AND {where}"
        )
        conn.execute("ANALYZE" if db.kind == "sqlite" else "VACUUM ANALYZE executions")
    finally:
        conn.close()


def _drain(db: c.Database, app: str, jobs: int, label: str) -> dict[str, Any]:
    logdir = c.tmpdir(label)
    with c.process([c.SOLO_OS, "worker", app], c.solo_env(db), logdir / "worker.log") as p:
        r = c.time_drain(lambda: remaining(db), jobs, proc=p)
    r["succeeded"] = int(db.scalar("SELECT count(*) FROM executions WHERE status = 'succeeded'") or 0)
    return r


def _pair(kind: str, jobs: int, keys: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with c.fresh_database(kind, "bench_plain") as db:
        c.db_upgrade(db)
        _seed.seed(db, "pending", jobs)
        plain = _drain(db, PLAIN, jobs, "flow-plain")
    with c.fresh_database(kind, "bench_flow") as db:
        c.db_upgrade(db)
        _seed.seed(db, "pending", jobs)
        _keys(db, f"s.n % {keys}")
        flow = _drain(db, FLOW, jobs, "flow-keys")
    return plain, flow


def drain(kind: str, jobs: int, keys: int, rounds: int) -> dict[str, Any]:
    """``rounds`` pairs, plain then flow, one pair after the other (a change in the machine's
    load falls on both): each pair's share, their median, and every run."""
    pairs = [_pair(kind, jobs, keys) for _ in range(rounds)]
    shares = [round(f["per_s"] / p["per_s"], 3) for p, f in pairs]
    return {"plain": [p for p, _ in pairs], "flow": [f for _, f in pairs], "keys": keys,
            "plain_median_per_s": statistics.median(p["per_s"] for p, _ in pairs),
            "flow_median_per_s": statistics.median(f["per_s"] for _, f in pairs),
            "flow_share_of_plain": shares,
            "flow_share_of_plain_median": statistics.median(shares)}


def _cold_delays(db: c.Database) -> list[float]:
    epoch = "extract(epoch FROM a.started_at)" if db.kind == "postgres" else "julianday(a.started_at) * 86400"
    conn = db.connect()
    try:
        t0 = conn.execute(f"SELECT min({epoch}) FROM attempts a").fetchone()[0]
        rows = conn.execute(
            f"SELECT {epoch} FROM attempts a JOIN executions e ON e.id = a.execution_id "
            "WHERE e.flow_key NOT LIKE '%hot'"
        ).fetchall()
    finally:
        conn.close()
    return [float(r[0]) - float(t0) for r in rows]


def _fair_run(kind: str, cold: int, hot: int, label: str) -> dict[str, Any]:
    with c.fresh_database(kind, "bench_fair") as db:
        c.db_upgrade(db)
        total = cold * 5 + hot
        _seed.seed(db, "pending", total)
        # The first ``hot`` by id (received first) are the hot key's; the rest round-robin.
        _keys(db, f"CASE WHEN s.n < {hot} THEN 'hot' ELSE 'c' || ((s.n - {hot}) % {cold}) END")
        r = _drain(db, FLOW, total, f"flow-{label}")
        delays = _cold_delays(db)
    return {"executions": total, "per_s": r["per_s"], "cold_started": len(delays),
            "cold_p50_s": round(c.percentile(delays, 50), 3),
            "cold_p99_s": round(c.percentile(delays, 99), 3)}


def fairness(kind: str, cold: int, repeat: int) -> dict[str, Any]:
    """``repeat`` pairs of runs, alone then behind the hot key, one pair after the other (so a
    change in the machine's load falls on both); each shape's median p50/p99 and every run."""
    runs: dict[str, list[dict[str, Any]]] = {"cold_alone": [], "behind_hot_key": []}
    for _ in range(repeat):
        for label, hot in (("cold_alone", 0), ("behind_hot_key", cold)):
            runs[label].append(_fair_run(kind, cold, hot, label))
    out: dict[str, Any] = {}
    for label, got in runs.items():
        out[label] = {
            "cold_p50_s": round(statistics.median(r["cold_p50_s"] for r in got), 3),
            "cold_p99_s": round(statistics.median(r["cold_p99_s"] for r in got), 3),
            "runs": got,
        }
    out["p99_behind_over_alone"] = round(
        out["behind_hot_key"]["cold_p99_s"] / out["cold_alone"]["cold_p99_s"], 3
    )
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="postgres,sqlite")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--cold", type=int, default=1_000)
    p.add_argument("--rounds", type=int, default=3, help="plain/flow drain pairs (medians)")
    p.add_argument("--repeat", type=int, default=3, help="fairness runs per shape (medians)")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"settings": vars(args), "loadavg_before": c.loadavg()}
    for kind in args.db.split(","):
        c.log(f"flow drain on {kind}")
        results[kind] = {"drain": drain(kind, args.jobs, args.keys, args.rounds),
                         "fairness": fairness(kind, args.cold, args.repeat)}
        c.log(f"{kind}: {results[kind]}")
    results["loadavg_after"] = c.loadavg()
    c.write_result("flow_drain", results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
