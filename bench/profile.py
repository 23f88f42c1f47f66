"""Where the time goes: py-spy samples ``solo-os serve`` under ingest load, or ``solo-os worker``
while it drains, and prints the functions that take the most time (self and inclusive).

    .venv/bin/python bench/profile.py ingest|drain [--db postgres] [--py-spy PATH] [--seconds 15]

py-spy is not a project dependency: install it anywhere (``python3 -m venv /tmp/pyspy &&
/tmp/pyspy/bin/pip install py-spy``) and pass its path (default: ``py-spy`` on PATH, then
``/tmp/pyspy/bin/py-spy``). Collapsed stacks go to ``bench/results/profile-<what>-<db>.txt.gz``
(gunzip, then open them with speedscope or flamegraph.pl); the summary is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common as c
import _seed
import drain as drain_mod


def _pyspy(given: str | None) -> str:
    scratch = "/tmp/pyspy/bin/py-spy"  # noqa: S108 - the scratch venv the docstring suggests
    for candidate in (given, shutil.which("py-spy"), scratch):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("py-spy not found: pip install py-spy into a scratch venv, pass --py-spy")


def _records(text: str) -> list[str]:
    """One ``stack count`` record per sample line; a frame name may hold a newline (code made
    by ``exec``), so lines are joined until one ends in a count."""
    out: list[str] = []
    buf = ""
    for line in text.splitlines():
        buf = f"{buf} {line}" if buf else line
        if buf.rpartition(" ")[2].isdigit():
            out.append(buf)
            buf = ""
    return out


def summarize(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    total = 0
    for line in _records(collapsed.read_text()):
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {"samples": total, "self_pct": share(self_n), "inclusive_pct": share(incl_n)}


def record(pyspy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def profile_ingest(db: c.Database, pyspy: str, seconds: float, out: Path) -> None:
    port = c.free_port()
    with c.process([c.SOLO_OS, "serve", "examples/billing/app.py", "--port", str(port)],
                   c.solo_env(db), c.tmpdir("profile") / "serve.log") as p:
        base = f"http://127.0.0.1:{port}"
        c.wait_http(f"{base}/readyz", proc=p)
        spy = record(pyspy, p.pid, seconds, out)
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                c.run_load(["closed", "--url", f"{base}/webhooks/billing", "--secret", c.SECRET,
                            "--requests", "5000", "--concurrency", "64"])

        t = threading.Thread(target=load, daemon=True)
        t.start()
        spy.wait()
        stop.set()
        t.join()


def profile_drain(db: c.Database, pyspy: str, seconds: float, out: Path) -> None:
    _seed.seed(db, "pending", 200_000)
    with c.process([c.SOLO_OS, "worker", drain_mod.APP], c.solo_env(db),
                   c.tmpdir("profile") / "worker.log") as p:
        time.sleep(2.0)  # past start-up
        record(pyspy, p.pid, seconds, out).wait()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ingest", "drain"])
    ap.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    ap.add_argument("--py-spy", dest="pyspy")
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args(argv)
    pyspy = _pyspy(args.pyspy)
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    out = c.RESULTS / f"profile-{args.what}-{args.db}.txt"
    with c.fresh_database(args.db, "bench_profile") as db:
        c.db_upgrade(db)
        (profile_ingest if args.what == "ingest" else profile_drain)(db, pyspy, args.seconds, out)
    summary = summarize(out)
    import gzip

    packed = out.with_suffix(".txt.gz")
    packed.write_bytes(gzip.compress(out.read_bytes()))
    out.unlink()
    c.write_result(f"profile-{args.what}-{args.db}",
                   {"collapsed": str(packed.relative_to(c.ROOT)), **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
