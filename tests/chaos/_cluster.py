"""A private PostgreSQL cluster for one test: initdb into a temporary directory, its own port
and socket directory, so the test can restart it without touching the shared server.

initdb refuses to run as root: as root, every command runs as the ``postgres`` user through
``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.chaos import _support


def find_bindir() -> tuple[Path | None, str]:
    """The directory of ``initdb``/``pg_ctl``, or None with the reason."""
    found = shutil.which("initdb")
    candidates = [found] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    for c in candidates:
        if c and Path(c).exists() and (Path(c).parent / "pg_ctl").exists():
            return Path(c).parent, ""
    return None, "initdb/pg_ctl not found (PATH or /usr/lib/postgresql/*/bin)"


def runas_prefix() -> tuple[list[str] | None, str]:
    """The command prefix to run PostgreSQL's tools as a non-root user (empty when not root)."""
    if os.geteuid() != 0:
        return [], ""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None, "running as root and there is no 'postgres' user to run initdb as"
    runuser = shutil.which("runuser")
    if runuser is None:
        return None, "running as root and runuser is not available"
    return [runuser, "-u", "postgres", "--"], ""


class Cluster:
    def __init__(self, bindir: Path, prefix: list[str]) -> None:
        self.bindir = bindir
        self.prefix = prefix
        self.root = Path(tempfile.mkdtemp(prefix="solo_chaos_pg_"))
        self.root.chmod(0o755)
        if prefix:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = self.root / "data"
        self.port = _support.free_port()
        self.listen = "127.0.0.1"  # the address(es) the postmaster listens on
        self.max_connections = 100  # initdb's default; a test may set it before start()
        self.started = False

    def _run(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [*self.prefix, str(self.bindir / args[0]), *args[1:]],
            capture_output=True, text=True, timeout=timeout, cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")

    def _options(self) -> list[str]:
        # The log file is named on every start: without it the server would inherit pg_ctl's
        # stdout, and waiting for pg_ctl's output would wait for the server to exit.
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses={self.listen} -c fsync=on "
                f"-c synchronous_commit=on -c max_connections={self.max_connections}")
        return ["-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                "-o", opts]

    def start(self) -> None:
        self._run("pg_ctl", *self._options(), "start")
        self.started = True

    def restart(self, mode: str = "fast") -> None:
        """Stop (``fast``: roll back and disconnect every session) and start again."""
        self._run("pg_ctl", *self._options(), "-m", mode, "restart")

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            finally:
                self.started = False

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
