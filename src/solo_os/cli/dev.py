"""``solo-os run --reload``: restart the app when its code changes, losing no work.

A supervisor process watches the app's folder (Python files and ``.env``) and runs the app in
a child process, ``solo-os run`` without ``--reload``. On a change it sends the child SIGTERM
and waits: the child stops taking deliveries, lets running handlers finish within the
shutdown grace and releases the leases of those that do not, then exits. Everything queued
is in the database, so the next child carries on with it. A child that fails to start (a
syntax error) is started again at the next change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from solo_os import config, errors
from solo_os.cli import _common

WATCHED_SUFFIXES = (".py", ".pyi")
WATCHED_NAMES = (".env",)
EXTRA_WAIT = 5.0  # seconds past the shutdown grace before a child that will not stop is killed
_CHILD = "from solo_os.cli import main; main()"


def watch_root(target: str | None) -> Path:
    """The folder to watch: the app file's own, else the current directory (a module)."""
    target = _common.app_target(target)
    module = target.partition(":")[0]
    if module.endswith(".py") or "/" in module:
        path = Path(module).resolve()
        if not path.is_file():
            raise errors.ConfigError(f"APP: no such file {module!r}")
        return path.parent
    return Path.cwd()


def child_command(target: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-c", _CHILD, "run", target, "--host", host, "--port", str(port)]


def _watch_filter() -> Any:
    import watchfiles

    class AppFiles(watchfiles.DefaultFilter):
        """Python sources and ``.env``; never the databases or logs next to them."""

        def __call__(self, change: watchfiles.Change, path: str) -> bool:
            name = os.path.basename(path)
            return super().__call__(change, path) and (
                name.endswith(WATCHED_SUFFIXES) or name in WATCHED_NAMES
            )

    return AppFiles()


class Supervisor:
    """Runs the app in a child process and restarts it when watched files change."""

    def __init__(self, command: Sequence[str], root: Path, grace: float) -> None:
        self.command = list(command)
        self.root = root
        self.stop_timeout = grace + EXTRA_WAIT
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.restarts = 0

    def start_child(self) -> None:
        self.child = subprocess.Popen(self.command)  # noqa: S603 - our own interpreter and CLI
        _common.err.print(f"[dim]reload: app started (pid {self.child.pid})[/dim]", highlight=False)

    def stop_child(self) -> None:
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)  # graceful: finish or release running work
        try:
            child.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            _common.err.print(
                f"[yellow]reload: pid {child.pid} did not stop in {self.stop_timeout:g}s; killing it"
                " (its leases expire and its work runs again)[/yellow]",
                highlight=False,
            )
            child.kill()
            child.wait()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping.set()

    def run(self) -> None:
        import watchfiles

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        _common.err.print(
            f"[dim]reload: watching {self.root} for changes to *.py and .env[/dim]", highlight=False
        )
        self.start_child()
        reported_exit: int | None = None
        try:
            for changes in watchfiles.watch(
                self.root,
                watch_filter=_watch_filter(),
                stop_event=self.stopping,
                yield_on_timeout=True,
                rust_timeout=500,
                debounce=400,
                raise_interrupt=False,
            ):
                if self.stopping.is_set():
                    break
                if not changes:  # a timeout: look after the child
                    code = self.child.poll() if self.child is not None else None
                    if code is not None and code != reported_exit:
                        reported_exit = code
                        _common.err.print(
                            f"[red]reload: the app exited with code {code}; waiting for a change[/red]",
                            highlight=False,
                        )
                    continue
                shown = ", ".join(sorted(os.path.relpath(p, self.root) for _, p in changes)[:5])
                _common.err.print(f"reload: {shown} changed; restarting", highlight=False)
                self.stop_child()
                self.restarts += 1
                reported_exit = None
                self.start_child()
        finally:
            self.stop_child()


def run_with_reload(target: str | None, host: str, port: int) -> None:
    """``solo-os run --reload``: supervise ``solo-os run`` and restart it on code changes."""
    with _common.friendly_errors():
        try:
            import watchfiles  # noqa: F401 - comes with uvicorn[standard]
        except ImportError:
            raise errors.ConfigError(
                "--reload needs the watchfiles package (pip install watchfiles)"
            ) from None
        target = _common.app_target(target)
        root = watch_root(target)
        grace = config.load().shutdown_grace_seconds
        Supervisor(child_command(target, host, port), root, grace).run()
