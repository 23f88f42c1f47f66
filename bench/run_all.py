"""Run every benchmark in one go, then write the table and the chart.

    .venv/bin/python bench/run_all.py            # the full run (~30-40 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick    # small sizes, a few minutes: a smoke run
    .venv/bin/python bench/run_all.py --only ingest,drain   # some of them

Each benchmark runs as its own process (``bench/<name>.py``) and writes
``bench/results/<name>.json``; ``report.py`` then turns those files into the table in
``docs/benchmarks.md`` (between its ``results`` markers), ``bench/results/TABLE.md`` and the
chart ``docs/benchmarks-ratios.png``. Alternatives run in the same invocation as solo-os, so
every ratio compares figures measured minutes apart on the same machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import _common as c

FULL: dict[str, list[str]] = {
    "pgbench_limit": ["--seconds", "30"],
    "ingest": [],
    "drain": ["--processes", "1,auto"],
    "alternatives": [],
    "e2e": ["--duration", "60"],
    "history": [],
}
QUICK: dict[str, list[str]] = {
    "pgbench_limit": ["--seconds", "10"],
    "ingest": ["--requests", "5000"],
    "drain": ["--jobs", "10000", "--processes", "1,auto"],
    "alternatives": ["--jobs", "5000", "--requests", "3000"],
    "e2e": ["--duration", "10"],
    "history": ["--rows", "200000", "--requests", "5000", "--jobs", "10000"],
}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not for the docs)")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(FULL))
    p.add_argument("--no-report", action="store_true", help="do not rewrite the table and chart")
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(plan)
    unknown = set(names) - set(plan)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    started = time.monotonic()
    c.log(f"machine: {c.machine()}")
    for name in names:
        c.log(f"=== {name} {' '.join(plan[name])}")
        t = time.monotonic()
        rc = subprocess.call([c.PYTHON, str(c.BENCH / f"{name}.py"), *plan[name]], cwd=c.ROOT,
                             stdout=subprocess.DEVNULL)
        c.log(f"=== {name}: exit {rc} after {time.monotonic() - t:.0f}s")
        if rc != 0:
            failed.append(name)
    if not args.no_report:
        subprocess.check_call([c.PYTHON, str(c.BENCH / "report.py"), *(["--quick"] if args.quick else [])],
                              cwd=c.ROOT)
    c.log(f"all done in {time.monotonic() - started:.0f}s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
