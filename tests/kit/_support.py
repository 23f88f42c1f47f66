"""Running the real CLI: a server on a free port, commands with a clean environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SOLO_OS = str(Path(sys.executable).parent / "solo-os")
_SCRUB = ("DATABASE_URL", "SOLO_OS_APP")


def clean_env(**extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUB and not k.endswith(("_WEBHOOK_SECRET", "_SIGNING_SECRET"))
    }
    return {**base, **extra}


def cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SOLO_OS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"solo-os exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"solo-os on port {port} not ready within {timeout}s:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.1)


@contextmanager
def server(
    args: list[str], env: dict[str, str], port: int, log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``solo-os ARGS --port PORT`` until the block ends; its output goes to ``log``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SOLO_OS, *args, "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(port, proc, log)
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def plugin_args(python: str = sys.executable) -> list[str]:
    """``-p solo_os.testing`` unless the interpreter's solo-os registers the plugin itself
    through its ``pytest11`` entry point (then ``-p`` is not needed)."""
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m;"
            "print(any(e.value == 'solo_os.testing' for e in m.entry_points(group='pytest11')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [] if probe.stdout.strip() == "True" else ["-p", "solo_os.testing"]


def pytest_in(
    folder: Path,
    *args: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``folder`` in a fresh interpreter, the solo-os plugin loaded."""
    return subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", *plugin_args(python), *args, str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env or clean_env(),
        cwd=cwd,
    )
