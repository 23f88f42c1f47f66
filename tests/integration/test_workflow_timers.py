"""A sleep's end (or a wait's timeout) is found at its time, not at the wake loop's next poll:
the loop sleeps towards the earliest wake time it knows of, and a new, earlier one stored by
this process (or by another: ``NOTIFY solo_os_timers`` on PostgreSQL, a datagram of
``store/_sqlite_wake.py`` on SQLite) wakes it to look again. Measured on the real clock, with
the loop's safety poll set far out (30 s), so only the signal can make the bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from solo_os import store as store_mod
from solo_os.core import ids, records
from solo_os.runtime import workflow
from solo_os.store._workflow import Suspension

ROOT = Path(__file__).resolve().parents[2]
NAP = 0.3  # seconds
BOUND = 1.5  # seconds late at most (the poll it replaces came up to 1 s late; here 30 s)


async def _running(store: store_mod.Store, key: str) -> records.Claimed:
    text = json.dumps({"k": key})
    await store.ingest([records.NewEvent(
        id=ids.uuid7(), source="shop", idempotency_key=key, type="start", status="accepted",
        payload=text, body=text.encode(), headers={}, errors=None, correlation_id=key,
        received_at=datetime.now(UTC), executions=(records.NewExecution(ids.uuid7(), "h", 3),),
    )])
    [c] = [c for c in await store.claim("w", 100, datetime.now(UTC), 600) if c.document["k"] == key]
    return c


async def _nap(store: store_mod.Store, c: records.Claimed) -> datetime:
    now = datetime.now(UTC)
    wake = now + timedelta(seconds=NAP)
    s = Suspension(execution_id=c.id, attempt=c.attempt, name="nap", kind="sleep",
                   started_at=now, wake_at=wake)
    assert await store.workflow.suspend(s, now) is None
    return wake


async def _lateness(store: store_mod.Store, execution_id: UUID, wake: datetime) -> float:
    """Seconds from ``wake`` until the execution is pending again (checked every 10 ms)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        x = await store.get_execution(execution_id)
        if x is not None and x.status == "pending":
            return (datetime.now(UTC) - wake).total_seconds()
        await asyncio.sleep(0.01)
    raise AssertionError("the sleep did not end within 10 s")


@contextlib.asynccontextmanager
async def _wake_loop(store: store_mod.Store) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(workflow.wake_loop(store, lambda: datetime.now(UTC), stop, most=30))
    await asyncio.sleep(0.2)  # it has looked once and sleeps: nothing waits yet
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_sleep_stored_by_this_process_ends_at_its_time(store: store_mod.Store) -> None:
    a = store
    async with _wake_loop(a):
        late = []
        for i in range(3):
            c = await _running(a, f"local-{i}")
            wake = await _nap(a, c)
            late.append(await _lateness(a, c.id, wake))
    assert min(late) >= 0  # never early
    assert max(late) < BOUND, late


@pytest.mark.postgres
async def test_a_sleep_stored_by_another_process_ends_at_its_time(pg_url: str) -> None:
    a, b = store_mod.connect(pg_url), store_mod.connect(pg_url)
    await a.start()
    await b.start()
    await asyncio.sleep(0.3)
    try:
        async with _wake_loop(b):  # only b's loop runs: a's timers reach it by NOTIFY
            late = []
            for i in range(3):
                c = await _running(a, f"remote-{i}")
                wake = await _nap(a, c)
                late.append(await _lateness(a, c.id, wake))
    finally:
        await a.close()
        await b.close()
    assert min(late) >= 0
    assert max(late) < BOUND, late


# Another process stores the sleeps: three, a second apart, each line "<execution id> <wake>".
_SLEEPER = """
import asyncio, sys
from solo_os import store as store_mod
from tests.integration.test_workflow_timers import _nap, _running

async def main() -> None:
    a = store_mod.connect(sys.argv[1])
    await a.start()
    try:
        for i in range(3):
            c = await _running(a, f"process-{i}")
            print(c.id, (await _nap(a, c)).isoformat(), flush=True)
            await asyncio.sleep(1.0)
    finally:
        await a.close()

asyncio.run(main())
"""


async def test_a_sleep_stored_by_another_sqlite_process_ends_at_its_time(sqlite_url: str) -> None:
    b = store_mod.connect(sqlite_url)
    await b.start()
    try:
        async with _wake_loop(b):  # b listens; the other process's timers reach it as datagrams
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _SLEEPER, sqlite_url, cwd=ROOT, stdout=asyncio.subprocess.PIPE
            )
            assert proc.stdout is not None
            late = []
            async for line in proc.stdout:
                execution_id, wake = line.decode().split()
                late.append(await _lateness(b, UUID(execution_id), datetime.fromisoformat(wake)))
            assert await proc.wait() == 0
    finally:
        await b.close()
    assert len(late) == 3
    assert min(late) >= 0
    assert max(late) < BOUND, late
