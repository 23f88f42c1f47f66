"""The app on a fresh SQLite database per test, reached over HTTP without a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from solo_os import runtime as runtime_mod

from .harness import SECRETS, Harness, load_app


@pytest.fixture
async def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'test.db'}")
    monkeypatch.setenv("RETRY_BASE_DELAY_MS", "0")
    application = load_app().app
    runtime = runtime_mod.Runtime(
        application, migrate=True, env=SECRETS, worker_options={"poll_interval": 0.05}
    )
    await runtime.start()
    transport = httpx.ASGITransport(app=runtime.asgi(lifespan=False))
    client = httpx.AsyncClient(transport=transport, base_url="http://app.test")
    try:
        yield Harness(application, runtime, client)
    finally:
        await client.aclose()
        await runtime.stop()
