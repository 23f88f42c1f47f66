"""AdminPort: filters, replay with a fresh budget, cancel, purge and search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from solo_os.core import records
from solo_os.store import Filters
from solo_os.store.ports import AdminPort, IngestPort, QueuePort
from solo_os.testing import Clock
from tests.store._support import event, finished


class Ports(IngestPort, QueuePort, AdminPort, Protocol):
    """What these tests use of the store."""


async def _dead(store: Ports, clock: Clock, claimed: list[records.Claimed]) -> None:
    await store.finish("w", [finished(c, clock(), "dead") for c in claimed])


async def test_filters_narrow_executions(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), source="shop", handlers=("a", "b"))])
    await store.ingest([event(clock.advance(1), source="crm", handlers=("a",))])
    claimed = await store.claim("w", 10, clock(), 30)
    crm_a = next(c for c in claimed if c.source == "crm")
    shop_b = next(c for c in claimed if c.handler == "b")
    await _dead(store, clock, [crm_a])
    await store.finish("w", [finished(c, clock(), "succeeded") for c in claimed if c is not crm_a])

    assert await store.matching_ids(Filters(status="dead")) == [crm_a.id]
    assert await store.matching_ids(Filters(status="dead", source="shop")) == []
    assert await store.matching_ids(Filters(handler="b")) == [shop_b.id]
    assert await store.matching_ids(Filters(error="boom")) == [crm_a.id]
    assert await store.matching_ids(Filters(error="%")) == []  # LIKE wildcards are literal
    assert len(await store.matching_ids(Filters(limit=0))) == 3
    assert len(await store.matching_ids(Filters(limit=2))) == 2
    later = datetime.now(UTC) + timedelta(hours=1)  # finish stamps the real time
    assert await store.matching_ids(Filters(since=later)) == []
    assert len(await store.matching_ids(Filters(until=later, limit=0))) == 3
    listed = await store.list_executions(Filters(handler="a", type="order.paid"))
    assert {x.id for x in listed} == {crm_a.id, *(c.id for c in claimed if c.handler == "a")}


async def test_replay_gives_dead_executions_a_fresh_budget(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), handlers=("a", "b", "c"), max_attempts=1)])
    claimed = {c.handler: c for c in await store.claim("w", 10, clock(), 30)}
    await _dead(store, clock, [claimed["a"], claimed["b"]])
    ids = [c.id for c in claimed.values()]
    replayed = await store.replay(ids, {"a": 4}, 2, clock.advance(60))
    assert sorted(replayed) == sorted([claimed["a"].id, claimed["b"].id])  # c is running
    a = await store.get_execution(claimed["a"].id)
    b = await store.get_execution(claimed["b"].id)
    assert a is not None and (a.status, a.attempts, a.max_attempts) == ("pending", 1, 5)
    assert b is not None and (b.status, b.max_attempts) == ("pending", 3)
    assert a.run_after == clock()
    again = await store.claim("w", 10, clock(), 30)
    assert {(c.handler, c.attempt) for c in again} == {("a", 2), ("b", 2)}  # numbers go on
    assert await store.replay([], {}, 1, clock()) == []


async def test_cancel_and_purge(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), handlers=("run", "die"))])
    await store.ingest([event(clock.advance(1), handlers=("wait",))])
    claimed = {c.handler: c for c in await store.claim("w", 2, clock(), 30)}
    assert set(claimed) == {"run", "die"}
    await _dead(store, clock, [claimed["die"]])
    [waiting] = await store.matching_ids(Filters(status="pending"))
    ids = [claimed["run"].id, claimed["die"].id, waiting]
    assert sorted(await store.cancel(ids, clock())) == sorted([claimed["die"].id, waiting])
    statuses = await store.execution_statuses(ids)
    assert statuses[claimed["run"].id] == "running"  # a running one finishes its attempt first
    assert await store.purge(ids) == 2
    assert set(await store.execution_statuses(ids)) == {claimed["run"].id}


async def test_search_by_key_and_payload(store: Ports, clock: Clock) -> None:
    wanted = event(clock(), key="order-77", payload={"customer": "zebra-crossing"})
    await store.ingest([wanted, event(clock(), payload={"customer": "aardvark"})])
    by_key = await store.search("order-77", Filters())
    assert [e.id for e in await store.page_events(Filters(), search=by_key)] == [wanted.id]
    by_text = await store.search("zebra-cross", Filters())
    assert [e.id for e in await store.page_events(Filters(), search=by_text)] == [wanted.id]
    by_id = await store.search(str(wanted.id), Filters())
    assert by_id.uuid == wanted.id
    assert [e.id for e in await store.page_events(Filters(), search=by_id)] == [wanted.id]
    nothing = await store.search("no-such-thing", Filters())
    assert await store.page_events(Filters(), search=nothing) == []
