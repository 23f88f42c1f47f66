"""Browser tests: Playwright for Python driving the system's Chromium (never a downloaded one).

Outside CI they skip when Chromium is missing; under ``CI=true`` a missing Chromium fails.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from solo_os import App
from solo_os.runtime import runtime as runtime_mod
from tests import helpers

CHROMIUM = os.environ.get("SOLO_OS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_TOKEN = "dashboard-test-token-0123456789"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        message = f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: ``SOLO_OS_SCREENSHOTS`` (e.g. docs/dashboard) or a temp dir."""
    target = Path(os.environ.get("SOLO_OS_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


@asynccontextmanager
async def live_server(
    application: App, database_url: str, **settings: Any
) -> AsyncIterator[tuple[str, runtime_mod.Runtime]]:
    """The app's runtime behind a real HTTP server on 127.0.0.1 (a browser needs sockets)."""
    application._settings = helpers.settings_for(database_url, SOLO_OS_ADMIN_TOKEN=ADMIN_TOKEN, **settings)
    rt = runtime_mod.Runtime(
        application,
        env={"BILLING_WEBHOOK_SECRET": helpers.SECRET},
        worker_options={"poll_interval": 0.05},
    )
    await rt.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        rt.asgi(lifespan=False),
        lifespan="off",
        log_config=None,
        access_log=False,
        ws="none",
        http="h11",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", rt
    finally:
        server.should_exit = True
        await task
        sock.close()
        await rt.stop()
