# ruff: noqa: E402 - the imports after importorskip need schemathesis, so they come after it
"""Property-based run of schemathesis against the admin API's own OpenAPI document.

Every operation is called with generated requests (valid and invalid) on a real server over
SQLite and PostgreSQL: no response may be a 5xx, and every response must match the document
(status code, content type, body schema).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip(
    "schemathesis",
    reason="schemathesis is not installed (add it to the dev dependency group to run this test)",
)

import asyncpg
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from solo_os import store as store_mod
from solo_os.runtime import runtime as runtime_mod
from tests import helpers
from tests.apps.billing import Effects, make_app

TOKEN = "schema-test-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
EXAMPLES = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Server:
    """The app's runtime and a uvicorn server in their own thread and event loop."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="schema-server", daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the server did not start: {self._error!r}")
        return self

    def __exit__(self, *_: Any) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        application = make_app(Effects())

        @application.cron("*/5 * * * *", name="nightly")
        def nightly(ctx: Any) -> None:
            return None

        application._settings = helpers.settings_for(self.database_url, SOLO_OS_ADMIN_TOKEN=TOKEN)
        rt = runtime_mod.Runtime(
            application,
            env={"BILLING_WEBHOOK_SECRET": helpers.SECRET},
            worker_options={"poll_interval": 0.05},
        )
        await rt.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(
            uvicorn.Config(
                rt.asgi(lifespan=False),
                lifespan="off",
                log_config=None,
                access_log=False,
                ws="none",
                http="h11",
            )
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            await self._seed()
            self._ready.set()
            await self._stop.wait()
        finally:
            server.should_exit = True
            await task
            sock.close()
            await rt.stop()

    async def _seed(self) -> None:
        """Some rows, so lists and details have something to show and page through."""
        import httpx

        async with httpx.AsyncClient(base_url=self.url) as client:
            for i in range(3):
                body, headers = helpers.delivery(helpers.invoice(), key=f"seed-{i}")
                await client.post("/webhooks/billing", content=body, headers=headers)
            body, headers = helpers.delivery(helpers.invoice(amount_cents=0), key="seed-bad")
            await client.post("/webhooks/billing", content=body, headers=headers)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'solo_os.db'}"
        asyncio.run(_migrate(url))
    else:
        template = request.getfixturevalue("pg_template")
        from tests.conftest import _PG_BASE, PG_ADMIN_URL

        name = f"solo_os_schema_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg(PG_ADMIN_URL, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        url = f"{_PG_BASE}/{name}"
        drop = (PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        with Server(url) as server:
            yield server.url
    finally:
        if drop is not None:
            asyncio.run(_pg(*drop))


async def _migrate(url: str) -> None:
    s = store_mod.connect(url)
    try:
        await s.migrate()
    finally:
        await s.close()


async def _pg(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_server_errors_and_no_schema_violations(server_url: str) -> None:
    # schemathesis' own pytest integration does not run on pytest 9 yet, so each operation's
    # strategy is driven by hypothesis here, valid and invalid requests alike.
    schema = schemathesis.openapi.from_url(f"{server_url}/api/openapi.json", headers=AUTH)
    base_url = f"{server_url}/api"
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                case.call_and_validate(base_url=base_url, headers=AUTH, checks=CHECKS)

            try:
                check()
            except Exception as exc:
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)
