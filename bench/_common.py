"""What every benchmark shares: fresh databases, solo-os subprocesses, machine facts, results.

Benchmarks run the real CLI (``solo-os serve`` / ``solo-os worker``) as subprocesses against a
fresh database each, and load them from a separate process, so what they measure is what a
user would run. Results are printed and written as JSON under ``bench/results/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
APPS = BENCH / "apps"
VENV_BIN = Path(sys.executable).parent
SOLO_OS = str(VENV_BIN / "solo-os")
PYTHON = sys.executable
SECRET = "bench-secret-0123456789abcdef0123"
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0]


# --- machine ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The facts a reader needs to weigh a figure: cores, memory, versions, load right now."""
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg_version = ""
    with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = str(row[0]) if row else ""
        fsync = conn.execute("SHOW fsync").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
        pg_version += f" (fsync={fsync[0] if fsync else '?'}, synchronous_commit={sync[0] if sync else '?'})"
    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "loadavg": list(os.getloadavg()),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- results ---------------------------------------------------------------------------------


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """``bench/results/<name>.json`` with the machine facts added; also printed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(json.dumps(payload, indent=2, default=str))
    print(f"-> {path.relative_to(ROOT)}", file=sys.stderr)
    return path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {loadavg()})", file=sys.stderr, flush=True)


# --- databases -------------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh, private database: PostgreSQL (a new database on the local server) or SQLite."""

    kind: str  # "postgres" | "sqlite"
    url: str
    name: str = ""
    path: Path | None = None
    _tmp: str | None = field(default=None, repr=False)
    _conn: Any = field(default=None, repr=False)

    def psql_url(self) -> str:
        return self.url

    def connect(self) -> Any:
        """A DB-API connection in autocommit mode (psycopg or sqlite3)."""
        if self.kind == "postgres":
            return psycopg.connect(self.url, autocommit=True)
        import sqlite3

        conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def scalar(self, sql: str) -> Any:
        """One value, over a connection kept open between calls (polling every 100 ms must
        not open a connection each time: the shared server has a connection limit)."""
        for attempt in range(5):
            try:
                if self._conn is None:
                    self._conn = self.connect()
                row = self._conn.execute(sql).fetchone()
                return row[0] if row else None
            except Exception:
                self.close()
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
        return None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


@contextlib.contextmanager
def fresh_database(kind: str, label: str = "bench") -> Iterator[Database]:
    """A new empty database, dropped (or deleted) afterwards."""
    if kind == "postgres":
        name = f"{label}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db = Database("postgres", f"{PG_BASE}/{name}", name=name)
        try:
            yield db
        finally:
            db.close()
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix=f"{label}_")
        path = Path(tmp) / "solo_os.db"
        db = Database("sqlite", f"sqlite:///{path}", path=path, _tmp=tmp)
        try:
            yield db
        finally:
            db.close()
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        raise ValueError(f"unknown database kind {kind!r}")


def solo_env(db: Database, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db.url,
        BILLING_WEBHOOK_SECRET=SECRET,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def db_upgrade(db: Database) -> None:
    subprocess.run([SOLO_OS, "db", "upgrade"], env=solo_env(db), check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


@contextlib.contextmanager
def process(args: list[str], env: Mapping[str, str], log_path: Path | None = None,
            grace: float = 15.0) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess stopped with SIGTERM (then SIGKILL) on exit; its output goes to a file."""
    out: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log_path:
            out.close()


@contextlib.contextmanager
def solo_serve(db: Database, app: str, log_path: Path | None = None,
               **env: str) -> Iterator[str]:
    """``solo-os serve APP`` on a free port; yields its base URL once it is ready."""
    port = free_port()
    with process([SOLO_OS, "serve", app, "--port", str(port)], solo_env(db, **env), log_path) as p:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", proc=p)
        yield base


def run_load(args: list[str]) -> dict[str, Any]:
    """The load generator (``bench/_load.py``) as its own process; returns its JSON report."""
    out = subprocess.run([PYTHON, str(BENCH / "_load.py"), *args], check=True,
                         stdout=subprocess.PIPE, cwd=ROOT)
    return dict(json.loads(out.stdout))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def tmpdir(label: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"solo_bench_{label}_"))


def scalar_events(db: Database) -> int:
    return int(db.scalar("SELECT count(*) FROM events") or 0)


def time_drain(remaining: Any, total: int, timeout: float = 600.0, interval: float = 0.1,
               proc: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
    """Poll ``remaining()`` (jobs not yet done) until it is 0; the rate counts from the first
    poll that saw progress to the poll that saw none left, so process start-up is excluded.
    The same method times every system, whatever its own bookkeeping."""
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    last_left = total
    while True:
        now = time.monotonic()
        left = int(remaining())
        if first is None and left < total:
            first = (now, left)
        if left == 0:
            break
        if now > deadline:
            raise RuntimeError(f"drain did not finish within {timeout}s: {left} of {total} left")
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}; {left} of {total} left")
        last_left = left
        time.sleep(interval)
    assert first is not None
    t0, left0 = first
    elapsed = max(1e-9, now - t0)
    _ = last_left
    return {"jobs": total, "timed_jobs": left0, "elapsed_s": round(elapsed, 3),
            "per_s": round(left0 / elapsed, 1)}
