"""The store down: 503 with Retry-After, never a 2xx for an event that is not stored."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from solo_os import store as store_mod
from solo_os.runtime import runtime as runtime_mod
from solo_os.store.sqlite import SQLiteStore
from tests import helpers
from tests.apps.billing import Effects, make_app


class TcpProxy:
    """A TCP proxy to a real server that can be cut (connections dropped, port refusing)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for w in list(self._pipes):
            w.transport.abort()
        self._pipes.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pipes.update({writer, up_writer})

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _send_all(client: httpx.AsyncClient, prefix: str, n: int) -> list[tuple[str, httpx.Response]]:
    async def one(i: int) -> tuple[str, httpx.Response]:
        key = f"{prefix}-{i}"
        body, headers = helpers.delivery(helpers.invoice(), key=key)
        return key, await client.post("/webhooks/billing", content=body, headers=headers)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def _stored_keys(url: str) -> set[str]:
    s = store_mod.connect(url)
    try:
        return {e.idempotency_key for e in await s.list_events(store_mod.Filters(limit=0))}
    finally:
        await s.close()


@pytest.mark.postgres
async def test_postgres_going_away_gives_503_and_nothing_unstored_is_acknowledged(
    pg_url: str,
) -> None:
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    via_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    async with helpers.running(make_app(Effects()), via_proxy, roles=("serve",)) as h:
        before = await _send_all(h.client, "before", 20)
        assert {r.status_code for _, r in before} == {200}
        await proxy.cut()  # connections dropped, the port refuses new ones
        during = await _send_all(h.client, "during", 20)
        assert {r.status_code for _, r in during} == {503}
        for _, r in during:
            assert r.json() == {"error": "unavailable"}
            assert r.headers["retry-after"].isdigit()
        ready = await h.client.get("/readyz")
        assert ready.status_code == 503
        await proxy.start()  # back on the same port
        await asyncio.sleep(0.2)
        after = await _send_all(h.client, "after", 20)
        assert {r.status_code for _, r in after} == {200}
        assert (await h.client.get("/readyz")).status_code == 200
    await proxy.cut()
    acknowledged = {k for k, r in before + during + after if r.status_code == 200}
    stored = await _stored_keys(pg_url)
    assert acknowledged <= stored
    assert not any(k.startswith("during") for k in stored)


async def test_sqlite_locked_past_its_busy_timeout_gives_503(sqlite_url: str) -> None:
    app = make_app(Effects())
    app._settings = helpers.settings_for(sqlite_url)
    store = SQLiteStore(sqlite_url.replace("sqlite://", "sqlite+aiosqlite://"), busy_timeout_ms=200)
    rt = runtime_mod.Runtime(
        app, roles=("serve",), store=store, env={"BILLING_WEBHOOK_SECRET": helpers.SECRET}
    )
    await rt.start()
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rt.asgi(lifespan=False)), base_url="http://t"
    )
    blocker: Any = None
    try:
        ok = await _send_all(client, "ok", 5)
        assert {r.status_code for _, r in ok} == {200}
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the only write lock
        locked = await _send_all(client, "locked", 5)
        assert {r.status_code for _, r in locked} == {503}
        blocker.execute("ROLLBACK")
        again = await _send_all(client, "again", 5)
        assert {r.status_code for _, r in again} == {200}
    finally:
        if blocker is not None:
            blocker.close()
        await client.aclose()
        await rt.stop()
        await store.close()
    stored = await _stored_keys(sqlite_url)
    assert {k for k, _ in ok + again} <= stored
    assert not any(k.startswith("locked") for k in stored)
