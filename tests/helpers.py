"""Test helpers: signed deliveries, an in-process runtime with an HTTP client, waiting."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
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
