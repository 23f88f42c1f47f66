"""Time without service at a PostgreSQL failover, with a multi-host URL and with a moving
address: runs ``tests/chaos/test_failover.py`` (a primary + synchronous standby made by the
test, ``kill -9`` of the primary's postmaster, ``pg_ctl promote``) and prints its figures.

    CI=true .venv/bin/python bench/failover.py

Needs what the test needs: PostgreSQL's binaries (initdb, pg_basebackup), root or a
``postgres`` user to run them as.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/chaos/test_failover.py", "-q", "-s", "-p", "no:randomly"],
        cwd=ROOT, env={**os.environ, "CI": "true"}, capture_output=True, text=True, check=False,
    )
    for line in done.stdout.splitlines():
        if line.lstrip(".").startswith("[") or "passed" in line or "failed" in line:
            print(line.lstrip("."))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
