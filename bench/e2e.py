"""End to end: a steady rate of deliveries with a worker running; receive-to-handler-start
latency, p50 and p99.

    .venv/bin/python bench/e2e.py [--db postgres,sqlite] [--rate 500] [--duration 60]
                                  [--mode split,run]

``split``: ``solo-os serve`` and ``solo-os worker`` as two processes (scale-out shape);
``run``: ``solo-os run``, both roles in one process (the default way to run). The load
generator sends ``--rate`` signed deliveries per second, open loop, for ``--duration`` seconds.

How the latency is measured: the handler (``bench/apps/latency.py``) writes
``time.time() - ctx.event.received_at`` on each first attempt. ``received_at`` is stamped by the
ingress once the body is read, so the figure spans verification, the durable commit of event
and execution, the wake-up of the worker (LISTEN/NOTIFY or in-process), the claim and the
dispatch. Both processes read the same host clock. Not the ``/metrics`` histogram: that lives in
the worker process, which serves no HTTP in the split shape, and its buckets are coarse.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Any

import _common as c
import drain as drain_mod

APP = "bench/apps/latency.py"


def e2e_once(db: c.Database, mode: str, rate: float, duration: float) -> dict[str, Any]:
    logdir = c.tmpdir("e2e")
    lat_file = str(logdir / "latency")
    env = {"BENCH_LATENCY_FILE": lat_file}
    port = c.free_port()
    base = f"http://127.0.0.1:{port}"
    procs = []
    if mode == "split":
        procs.append(([c.SOLO_OS, "serve", APP, "--port", str(port)], "serve.log"))
        procs.append(([c.SOLO_OS, "worker", APP], "worker.log"))
    else:
        procs.append(([c.SOLO_OS, "run", APP, "--port", str(port)], "run.log"))
    load_before = c.loadavg()
    import contextlib

    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(c.process(args, c.solo_env(db, **env), logdir / name))
                   for args, name in procs]
        c.wait_http(f"{base}/readyz", proc=started[0])
        # warm-up: connections, prepared statements
        c.run_load(["open", "--url", f"{base}/webhooks/billing", "--secret", c.SECRET, "--rate", "200",
                    "--duration", "2", "--dup", "0", "--key-prefix", "warmup"])
        time.sleep(1.0)
        for f in glob.glob(lat_file + ".*"):
            os.truncate(f, 0)
        report = c.run_load(["open", "--url", f"{base}/webhooks/billing", "--secret", c.SECRET,
                             "--rate", str(rate), "--duration", str(duration), "--dup", "0"])
        c.time_drain(lambda: drain_mod.remaining(db), 1, timeout=120)
    lat: list[float] = []
    starts: list[tuple[float, float]] = []  # (wall-clock start, latency)
    for f in glob.glob(lat_file + ".*"):
        with open(f) as fh:
            for line in fh:
                if fields := line.split():
                    lat.append(float(fields[0]))
                    starts.append((float(fields[2]), float(fields[0])))
    ms = {q: round(c.percentile(lat, q) * 1000, 2) for q in (50, 90, 99, 99.9)}
    return {
        "mode": mode,
        "target_rate_per_s": rate,
        "duration_s": duration,
        "sent": report["requests"],
        "status": report["status"],
        "achieved_rate_per_s": report["rate_per_s"],
        "http_latency_ms": report["latency_ms"],
        "handler_starts": len(lat),
        "receive_to_start_ms": {"p50": ms[50], "p90": ms[90], "p99": ms[99], "p999": ms[99.9],
                                "max": round(max(lat) * 1000, 2) if lat else None},
        "over_25ms": sum(x > 0.025 for x in lat),
        "worst_seconds": worst_seconds(starts),
        "check_every_delivery_started": len(lat) == report["distinct_keys_2xx"],
        "loadavg_before": load_before,
        "loadavg_after": c.loadavg(),
    }


def worst_seconds(starts: list[tuple[float, float]], n: int = 5) -> list[dict[str, Any]]:
    """How the tail is spread over the run: the ``n`` seconds with the slowest starts (second
    from the first start, starts in it, their p99 and max, and how many took over 25 ms)."""
    if not starts:
        return []
    t0 = min(t for t, _ in starts)
    by_second: dict[int, list[float]] = {}
    for t, x in starts:
        by_second.setdefault(int(t - t0), []).append(x)
    worst = sorted(by_second.items(), key=lambda kv: max(kv[1]), reverse=True)[:n]
    return [{"second": s, "starts": len(xs), "p99_ms": round(c.percentile(xs, 99) * 1000, 1),
             "max_ms": round(max(xs) * 1000, 1), "over_25ms": sum(x > 0.025 for x in xs)}
            for s, xs in sorted(worst)]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="postgres,sqlite")
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--mode", default="split,run")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"settings": vars(args)}
    failed = False
    for kind in args.db.split(","):
        for mode in args.mode.split(","):
            c.log(f"e2e {mode} on {kind}: {args.rate}/s for {args.duration}s")
            with c.fresh_database(kind, "bench_e2e") as db:
                c.db_upgrade(db)
                r = e2e_once(db, mode, args.rate, args.duration)
            results[f"{kind}-{mode}"] = r
            failed |= not r["check_every_delivery_started"]
            c.log(f"e2e {mode} {kind}: receive-to-start p50 {r['receive_to_start_ms']['p50']} ms "
                  f"p90 {r['receive_to_start_ms']['p90']} p99 {r['receive_to_start_ms']['p99']} "
              f"p999 {r['receive_to_start_ms']['p999']} max {r['receive_to_start_ms']['max']} ms "
              f"({r['handler_starts']} starts, {r['over_25ms']} over 25 ms)")
    c.write_result("e2e", results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
