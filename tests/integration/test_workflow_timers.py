"""A sleep's end (or a wait's timeout) is found at its time, not at the wake loop's next poll:
the loop sleeps towards the earliest wake time it knows of, and a new, earlier one stored by
this process (or, on PostgreSQL, by another: ``NOTIFY solo_os_timers``) wakes it to look
again. Measured on the real clock, with the loop's safety poll set far out (30 s), so only
the signal can make the bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from solo_os import store as store_mod
from solo_os.core import ids, records
from solo_os.runtime import workflow
from solo_os.store._workflow import Suspension

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


async def _lateness(store: store_mod.Store, c: records.Claimed, wake: datetime) -> float:
    """Seconds from ``wake`` until the execution is pending again (checked every 10 ms)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        x = await store.get_execution(c.id)
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
            late.append(await _lateness(a, c, wake))
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
                late.append(await _lateness(a, c, wake))
    finally:
        await a.close()
        await b.close()
    assert min(late) >= 0
    assert max(late) < BOUND, late
