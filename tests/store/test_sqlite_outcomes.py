"""SQLite: in a process that takes no deliveries (``solo-os worker``), outcomes waiting for a
write turn go with the next claim of their process (``SQLiteStore.finish``): one commit for
both; given back to ``finish`` when that claim fails. A process that ingests (``solo-os run``)
writes them in their own turn, as before. Deliveries come through a second store on the same
file here, as from ``serve``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from solo_os import errors
from solo_os.store import _flow, sqlite
from solo_os.testing import Clock
from tests.store._sqlite_support import count_commits, opened
from tests.store._support import event, finished

LEASE = 30.0


@pytest.fixture
async def lite(sqlite_url: str) -> AsyncIterator[sqlite.SQLiteStore]:
    async with opened(sqlite_url) as s:
        yield s


@pytest.fixture
async def serve(sqlite_url: str) -> AsyncIterator[sqlite.SQLiteStore]:
    """A second store on the same file, taking deliveries as ``solo-os serve`` would."""
    async with opened(sqlite_url) as s:
        yield s


async def test_a_claim_writes_the_waiting_outcomes_in_its_transaction(
    lite: sqlite.SQLiteStore, serve: sqlite.SQLiteStore, clock: Clock
) -> None:
    await serve.ingest([event(clock(), handlers=("a", "b"))])
    [a] = await lite.claim("w", 1, clock(), LEASE)
    commits = count_commits(lite)
    finishing = asyncio.create_task(lite.finish("w", [finished(a, clock(), "succeeded")]))
    await asyncio.sleep(0)  # the outcome waits for a turn
    [b] = await lite.claim("w", 1, clock(), LEASE)
    assert [r.execution_id for r in await finishing] == [a.id]
    assert commits == [1]  # the claim's: the outcome went with it
    statuses = await lite.execution_statuses([a.id, b.id])
    assert statuses == {a.id: "succeeded", b.id: "running"}
    [attempt] = await lite.list_attempts(a.id)
    assert attempt.outcome == "succeeded"


async def test_outcomes_a_failed_claim_took_are_written_by_their_own_turn(
    lite: sqlite.SQLiteStore, serve: sqlite.SQLiteStore, clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await serve.ingest([event(clock(), handlers=("a", "b"))])
    [a] = await lite.claim("w", 1, clock(), LEASE)
    finishing = asyncio.create_task(lite.finish("w", [finished(a, clock(), "succeeded")]))
    await asyncio.sleep(0)

    async def broken(*_args: Any) -> Any:
        raise errors.StoreUnavailable("store unavailable: test")

    monkeypatch.setattr(_flow, "events_by_id", broken)  # the claim fails after its update
    with pytest.raises(errors.StoreUnavailable):
        await lite.claim("w", 1, clock(), LEASE)  # rolled back, the outcome with it
    monkeypatch.undo()
    assert [r.execution_id for r in await asyncio.wait_for(finishing, 5)] == [a.id]
    statuses = await lite.execution_statuses([a.id])
    assert statuses == {a.id: "succeeded"}
    [b] = await lite.claim("w", 1, clock(), LEASE)  # b was not claimed by the failed one
    assert b.handler == "b"


async def test_without_a_claim_the_outcomes_take_their_own_turn(
    lite: sqlite.SQLiteStore, serve: sqlite.SQLiteStore, clock: Clock
) -> None:
    await serve.ingest([event(clock())])
    [a] = await lite.claim("w", 1, clock(), LEASE)
    applied = await asyncio.wait_for(lite.finish("w", [finished(a, clock(), "succeeded")]), 5)
    assert [r.execution_id for r in applied] == [a.id]
    assert (await lite.execution_statuses([a.id]))[a.id] == "succeeded"


async def test_in_a_process_that_ingests_outcomes_take_their_own_turn(
    lite: sqlite.SQLiteStore, clock: Clock
) -> None:
    await lite.ingest([event(clock(), handlers=("a", "b"))])  # as in solo-os run
    [a] = await lite.claim("w", 1, clock(), LEASE)
    commits = count_commits(lite)
    async with lite._writer_lock.turn():  # held: the outcome, then the claim, wait behind it
        finishing = asyncio.create_task(lite.finish("w", [finished(a, clock(), "succeeded")]))
        await asyncio.sleep(0.01)
        claiming = asyncio.create_task(lite.claim("w", 1, clock(), LEASE))
        await asyncio.sleep(0.01)
    [b] = await claiming  # first: a claim's turn comes before an outcome's
    await asyncio.wait_for(finishing, 5)
    assert commits == [2]  # the claim left the outcome to its own transaction
    statuses = await lite.execution_statuses([a.id, b.id])
    assert statuses == {a.id: "succeeded", b.id: "running"}
