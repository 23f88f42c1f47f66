"""Test helpers: signed deliveries, an in-process runtime with an HTTP client, ``solo-os run`` in
a process, waiting."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from solo_os import App, config
from solo_os.runtime import runtime as runtime_mod

SECRET = "test-secret-0123456789"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def invoice(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()),
        "amount_cents": 4900,
        "currency": "EUR",
        "paid_at": "2026-11-23T10:00:00Z",
    }
    data.update(overrides)
    return data


def delivery(
    payload: Any,
    *,
    event_type: str | None = "invoice.paid",
    key: str | None = None,
    secret: str = SECRET,
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"content-type": "application/json", "x-signature": sign(body, secret)}
    if event_type is not None:
        headers["x-event-type"] = event_type
    if key is not None:
        headers["x-idempotency-key"] = key
    return body, headers


@dataclass
class Harness:
    runtime: runtime_mod.Runtime
    client: httpx.AsyncClient

    @property
    def store(self) -> Any:
        return self.runtime.store

    async def post(self, source: str, payload: Any, **kw: Any) -> httpx.Response:
        body, headers = delivery(payload, **kw)
        return await self.client.post(f"/webhooks/{source}", content=body, headers=headers)


def settings_for(database_url: str, **extra: Any) -> config.Settings:
    return config.Settings(DATABASE_URL=database_url, RETRY_BASE_DELAY_MS=0, **extra)  # type: ignore[call-arg]


@asynccontextmanager
async def running(
    application: App,
    database_url: str,
    *,
    roles: Collection[str] = ("serve", "worker"),
    env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    clock: Callable[[], datetime] | None = None,
    **worker_options: Any,
) -> AsyncIterator[Harness]:
    """The app's runtime in this process, reached through httpx over ASGI (no sockets).

    ``clock`` (e.g. a ``solo_os.testing.Clock``) is the time the runtime sees; default: real.
    """
    application._settings = settings_for(database_url, **(settings or {}))
    rt = runtime_mod.Runtime(
        application,
        roles=roles,
        env=env if env is not None else {"BILLING_WEBHOOK_SECRET": SECRET},
        worker_options={"poll_interval": 0.05, **worker_options},
        **({"clock": clock} if clock is not None else {}),
    )
    await rt.start()
    transport = httpx.ASGITransport(app=rt.asgi(lifespan=False))
    client = httpx.AsyncClient(transport=transport, base_url="http://solo-os.test", timeout=30)
    try:
        yield Harness(rt, client)
    finally:
        await client.aclose()
        await rt.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@contextmanager
def solo_os_run(folder: Path, app_path: str, env: dict[str, str]) -> Iterator[str]:
    """``solo-os run APP`` as users start it, on a free port, until it answers ``/healthz``;
    yields its URL and stops it (SIGTERM, then SIGKILL after 20 s). Its output goes to
    ``folder/server.log``, shown if it exits or does not answer within 60 s."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "solo-os"), "run", app_path, "--port", str(port)],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
        )
        try:
            wait_answering(f"{url}/healthz", proc, folder / "server.log")
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_answering(
    url: str, proc: subprocess.Popen[Any], log: Path | None = None, timeout: float = 60
) -> None:
    """Poll ``url`` until it answers 200; fail with the process's log if it exits or does not
    answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            told = log.read_text(errors="replace") if log is not None else ""
            state = "exited" if proc.poll() is not None else f"no answer in {timeout:.0f} s"
            raise AssertionError(f"{url}: {state}\n{told}")
        time.sleep(0.1)
