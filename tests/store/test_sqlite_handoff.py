"""SQLite's hand-off (``store/_sqlite_claim.py``): in a process that ingests and runs a worker
(``solo-os run``), the ingest transaction leases due executions to that worker, as its claim
would, for at most the slots it offers; they reach it once the transaction commits. One
writing transaction per delivery instead of two. PostgreSQL has no hand-off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from solo_os import errors
from solo_os import store as store_mod
from solo_os.core import flow, records
from solo_os.store import _workflow, ports, sqlite
from solo_os.testing import Clock
from tests.store._sqlite_support import count_commits, opened
from tests.store._support import event

LEASE = 30.0


class Taker:
    """A worker as the hand-off sees it: offers ``slots``, records what it was given."""

    def __init__(self, clock: Clock, slots: int) -> None:
        self.worker_id = "run:1:abc"
        self.lease_seconds = LEASE
        self.clock = clock
        self.slots = slots
        self.held = 0
        self.taken: list[records.Claimed] = []

    def reserve(self, held: int) -> int:
        n, self.slots = max(0, self.slots - held), min(self.slots, held)
        self.held += n
        return n

    def take(self, claimed: Sequence[records.Claimed], reserved: int) -> None:
        self.held -= reserved
        self.slots += reserved - len(claimed)
        self.taken.extend(claimed)


@pytest.fixture
async def lite(sqlite_url: str) -> AsyncIterator[sqlite.SQLiteStore]:
    async with opened(sqlite_url) as s:
        yield s


async def _rows(s: store_mod.Store) -> dict[Any, Any]:
    async with s._db.read() as conn:
        rows = await conn.execute(sa.text("SELECT * FROM executions"))
        return {r.handler: r for r in rows}


async def test_an_ingest_leases_its_executions_to_the_worker_in_its_own_transaction(
    lite: sqlite.SQLiteStore, clock: Clock
) -> None:
    taker = Taker(clock, slots=5)
    lite.hand_off_to(taker)
    delivery = event(clock(), handlers=("a", "b"), payload={"amount": 7})
    commits = count_commits(lite)
    [result] = await lite.ingest([delivery])
    assert result.outcome == "accepted"
    assert commits == [1]  # one writing transaction stored and leased them
    assert sorted(c.handler for c in taker.taken) == ["a", "b"]
    assert taker.held == 0 and taker.slots == 3
    rows = await _rows(lite)
    for name in ("a", "b"):  # the columns a claim sets
        r = rows[name]
        assert (r.status, r.attempts, r.worker_id) == ("running", 1, taker.worker_id)
        assert r.lease_expires_at is not None and r.started_at is not None
    # What the worker gets is what its claim would have read back.
    lite.hand_off_to(None)
    other = event(clock(), handlers=("a",), payload={"amount": 7})
    await lite.ingest([other])
    [claimed] = await lite.claim("w", 1, clock(), LEASE)
    handed = next(c for c in taker.taken if c.handler == "a")
    assert claimed.document == handed.document == {"amount": 7}
    assert claimed.headers == handed.headers
    for field in ("attempt", "max_attempts", "source", "event_type", "received_at", "losses"):
        assert getattr(claimed, field) == getattr(handed, field), field
    assert handed.correlation_id == delivery.correlation_id
    assert handed.idempotency_key == delivery.idempotency_key
    assert handed.input_error is None
    assert await lite.claim("w", 5, clock(), LEASE) == []  # nothing left to claim


async def test_a_hand_off_takes_no_more_than_the_slots_offered_and_leaves_the_rest_due(
    lite: sqlite.SQLiteStore, clock: Clock
) -> None:
    taker = Taker(clock, slots=2)
    lite.hand_off_to(taker)
    await lite.ingest([event(clock(), handlers=("a", "b", "c", "d"))])
    assert len(taker.taken) == 2 and taker.slots == 0
    left = await lite.claim("w", 10, clock(), LEASE)
    assert len(left) == 2
    assert {c.id for c in left}.isdisjoint(c.id for c in taker.taken)


async def test_executions_already_due_go_first(lite: sqlite.SQLiteStore, clock: Clock) -> None:
    """The hand-off is the worker's claim: oldest due first, so fresh deliveries never jump
    a queue (here: one waiting from before the worker had a free slot)."""
    older = event(clock(), handlers=("old",), payload={"n": "old"})
    await lite.ingest([older])  # nobody takes it: no worker yet
    clock.advance(timedelta(seconds=1))
    taker = Taker(clock, slots=1)
    lite.hand_off_to(taker)
    await lite.ingest([event(clock(), handlers=("new",))])
    [c] = taker.taken
    assert c.handler == "old" and c.document == {"n": "old"}  # its event read from the store
    assert c.received_at == older.received_at
    [fresh] = await lite.claim("w", 5, clock(), LEASE)
    assert fresh.handler == "new"


async def test_no_hand_off_without_slots_nor_with_flow_control(
    lite: sqlite.SQLiteStore, clock: Clock
) -> None:
    taker = Taker(clock, slots=0)
    lite.hand_off_to(taker)
    await lite.ingest([event(clock(), handlers=("a",))])
    assert taker.taken == []
    taker.slots = 5
    lite.use_flow(flow.Plan({}, {}, False))  # the app has flow control: its claim fills the slots first
    clock.advance(timedelta(seconds=1))
    await lite.ingest([event(clock(), handlers=("b",))])
    assert taker.taken == [] and taker.slots == 5
    lite.use_flow(None)
    taker.slots = 1
    clock.advance(timedelta(seconds=1))
    await lite.ingest([event(clock(), handlers=("c",))])
    assert [c.handler for c in taker.taken] == ["a"]  # oldest due first
    rows = await _rows(lite)
    assert (rows["b"].status, rows["c"].status) == ("pending", "pending")


async def test_a_failed_ingest_leases_nothing_and_gives_the_slots_back(
    lite: sqlite.SQLiteStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    taker = Taker(clock, slots=3)
    lite.hand_off_to(taker)

    async def broken(*_args: Any) -> bool:
        raise errors.StoreUnavailable("store unavailable: test")

    monkeypatch.setattr(_workflow, "on_ingest", broken)  # fails after the lease, before commit
    with pytest.raises(errors.StoreUnavailable):
        await lite.ingest([event(clock(), handlers=("a",))])
    assert taker.taken == [] and taker.held == 0 and taker.slots == 3
    assert await _rows(lite) == {}  # rolled back


async def test_the_hand_off_is_sqlites_alone(store: store_mod.Store, clock: Clock) -> None:
    """PostgreSQL's ingest never leases: its workers claim (LISTEN/NOTIFY wakes them)."""
    if not isinstance(store, sqlite.SQLiteStore):
        assert not isinstance(store, ports.HandOffPort)
        assert store._db.hand_off is None
        await store.ingest([event(clock(), handlers=("a",))])
        assert (await _rows(store))["a"].status == "pending"
    else:
        assert isinstance(store, ports.HandOffPort)
        taker = Taker(clock, slots=1)
        store.hand_off_to(taker)
        await store.ingest([event(clock(), handlers=("a",))])
        assert (await _rows(store))["a"].status == "running"


async def test_an_ingest_leaves_its_executions_to_a_claim_of_the_worker_under_way(
    lite: sqlite.SQLiteStore, clock: Clock
) -> None:
    """The slots a claim of the worker waits to fill are not offered twice; what the ingest
    leaves due is that claim's (it runs after the ingest), so the worker is not woken for
    another claim."""
    taker = Taker(clock, slots=2)
    lite.hand_off_to(taker)
    lite._db._local_wakeup.clear()
    async with lite._writer_lock.turn():  # held: the ingest, then the claim, wait behind it
        ingesting = asyncio.create_task(lite.ingest([event(clock(), handlers=("a",))]))
        await asyncio.sleep(0.01)
        claiming = asyncio.create_task(lite.claim(taker.worker_id, 2, clock(), LEASE))
        await asyncio.sleep(0.01)
    await ingesting
    assert taker.taken == [] and taker.held == 0
    assert not lite._db._local_wakeup.is_set()
    [c] = await claiming
    assert c.handler == "a"


async def test_no_hand_off_while_lost_executions_are_looked_for(
    lite: sqlite.SQLiteStore, clock: Clock
) -> None:
    taker = Taker(clock, slots=2)
    lite.hand_off_to(taker)
    async with lite._writer_lock.turn():
        ingesting = asyncio.create_task(lite.ingest([event(clock(), handlers=("a",))]))
        await asyncio.sleep(0.01)
        with lite._hand_off.isolating():  # as during lost_due: a lost one would run alone
            pass
        lost = asyncio.create_task(lite.claim(taker.worker_id, 1, clock(), LEASE, lost=True))
        await asyncio.sleep(0.01)
    await ingesting
    assert taker.taken == [] and taker.slots == 2
    assert await lost == []  # none lost: a's execution waits for the worker's claim
    assert lite._db._local_wakeup.is_set()
