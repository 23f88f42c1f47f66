"""Processes and deliveries for the chaos tests: the real CLI as subprocesses, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests import helpers

SOLO_OS = str(Path(sys.executable).parent / "solo-os")
APPS = Path(__file__).resolve().parent / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        BILLING_WEBHOOK_SECRET=helpers.SECRET,
        LOG_LEVEL="warn",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


class Procs:
    """Subprocesses started by one test; every one is stopped (SIGTERM, then SIGKILL) at exit,
    and then whatever it left behind in its process group (each starts a session of its own):
    a wrapper that does not pass SIGTERM on (``faketime``) once left its ``solo-os run``
    running after the test, reparented to init, until the machine stopped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []

    def start(self, args: list[str], env: Mapping[str, str], name: str) -> subprocess.Popen[bytes]:
        out = open(self.log_dir / f"{name}-{len(self.all)}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._files.append(out)
        proc = subprocess.Popen(
            args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.all.append(proc)
        return proc

    def serve(self, app: str, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = self.start([SOLO_OS, "serve", app, "--port", str(port)], env, "serve")
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        return proc, base

    def worker(self, app: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        return self.start([SOLO_OS, "worker", app], env, "worker")

    def stop_all(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.all:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p in self.all:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # what is left of its group (gone: nothing)
        for f in self._files:
            f.close()

    def logs(self) -> str:
        """The tail of every log, for a failing assertion's message."""
        out = []
        for f in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(out)


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Procs]:
    procs = Procs(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"solo-os serve exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{base}/readyz did not answer 200 within {timeout}s")


async def post(client: httpx.AsyncClient, base: str, key: str, payload: Any | None = None,
               event_type: str = "invoice.paid") -> httpx.Response:
    body, headers = helpers.delivery(payload if payload is not None else helpers.invoice(),
                                     key=key, event_type=event_type)
    return await client.post(f"{base}/webhooks/billing", content=body, headers=headers)


async def send_all(base: str, keys: list[str], concurrency: int = 32) -> dict[str, int]:
    """Deliver one invoice per key over real HTTP; the status each key got (0: no answer)."""
    sem = asyncio.Semaphore(concurrency)
    result: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(key: str) -> None:
            async with sem:
                try:
                    result[key] = (await post(client, base, key)).status_code
                except httpx.HTTPError:
                    result[key] = 0

        await asyncio.gather(*(one(k) for k in keys))
    return result
