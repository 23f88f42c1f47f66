"""IngestPort: a delivery is stored once per (source, key); a rejected one can be upgraded."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, Protocol

import asyncpg
import pytest

from solo_os.store import _pg_sql, postgres
from solo_os.store.ports import IngestPort, ReadPort
from solo_os.store.postgres import PostgresStore
from solo_os.testing import Clock
from tests.store._support import event

# PostgreSQL's hot path (``store/_pg_ingest.py``): these run on PostgreSQL alone.
ONLY_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


class Ports(IngestPort, ReadPort, Protocol):
    """What these tests use of the store."""


async def test_accepted_then_duplicate_keeps_the_first_event(store: Ports, clock: Clock) -> None:
    first = event(clock(), key="k1", handlers=("fulfil", "notify"))
    [r1] = await store.ingest([first])
    assert (r1.outcome, r1.event_id, r1.executions) == ("accepted", first.id, 2)

    again = event(clock.advance(5), key="k1")
    [r2] = await store.ingest([again])
    assert (r2.outcome, r2.event_id) == ("duplicate", first.id)
    assert await store.get_event(again.id) is None
    assert (await store.counts()).get("pending") == 2  # the duplicate made no executions


async def test_same_key_other_source_is_another_event(store: Ports, clock: Clock) -> None:
    a, b = event(clock(), key="k", source="shop"), event(clock(), key="k", source="crm")
    results = await store.ingest([a, b])
    assert [r.outcome for r in results] == ["accepted", "accepted"]
    assert [r.event_id for r in results] == [a.id, b.id]  # results in the batch's order


async def test_rejected_then_accepted_upgrades_the_same_event(store: Ports, clock: Clock) -> None:
    bad = event(clock(), key="k2", status="rejected")
    [r1] = await store.ingest([bad])
    assert (r1.outcome, r1.executions) == ("rejected", 0)
    assert r1.errors

    rejected_again = event(clock.advance(1), key="k2", status="rejected")
    [r2] = await store.ingest([rejected_again])
    assert (r2.outcome, r2.event_id) == ("rejected", bad.id)

    good = event(clock.advance(1), key="k2", payload={"n": 2})
    [r3] = await store.ingest([good])
    assert (r3.outcome, r3.event_id, r3.executions) == ("accepted", bad.id, 1)
    stored = await store.get_event(bad.id)
    assert stored is not None
    assert stored[0].status == "accepted" and stored[0].payload == {"n": 2}

    [r4] = await store.ingest([event(clock.advance(1), key="k2")])
    assert (r4.outcome, r4.event_id) == ("duplicate", bad.id)


async def test_one_key_raced_by_two_connections_is_accepted_once(
    store: Ports, other: Ports, clock: Clock
) -> None:
    rounds = 5
    for i in range(rounds):
        a = event(clock(), key=f"race-{i}")
        b = event(clock(), key=f"race-{i}")
        ra, rb = await asyncio.gather(store.ingest([a]), other.ingest([b]))
        outcomes = sorted([ra[0].outcome, rb[0].outcome])
        assert outcomes == ["accepted", "duplicate"]
        assert ra[0].event_id == rb[0].event_id
    assert (await store.counts()).get("pending") == rounds


async def test_a_batch_mixing_new_repeated_and_rejected_keys_answers_each_in_order(
    store: Ports, clock: Clock
) -> None:
    """PostgreSQL answers repeats of accepted events on its hot path and hands a rejected
    event's redelivery to the general path: the answers still come back in the batch's order."""
    kept = event(clock(), key="kept", source="shop")
    other = event(clock(), key="kept", source="crm")
    bad = event(clock(), key="bad", status="rejected")
    assert [r.outcome for r in await store.ingest([kept, other, bad])] == ["accepted", "accepted", "rejected"]

    batch = [
        event(clock.advance(1), key="new-1"),
        event(clock(), key="kept", source="crm"),  # a repeat: the crm event, not the shop one
        event(clock(), key="bad", payload={"n": 3}),  # the rejected one, now valid
        event(clock(), key="kept", source="shop"),
        event(clock(), key="new-2", status="rejected"),
    ]
    results = await store.ingest(batch)
    assert [(r.outcome, r.event_id) for r in results] == [
        ("accepted", batch[0].id),
        ("duplicate", other.id),
        ("accepted", bad.id),
        ("duplicate", kept.id),
        ("rejected", batch[4].id),
    ]
    assert [r.executions for r in results] == [1, 0, 1, 0, 0]
    assert (await store.counts()).get("pending") == 4  # kept, other, new-1 and bad: one each


@ONLY_POSTGRES
async def test_postgres_answers_repeats_in_the_ingest_statement(
    store: Ports, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch holding a repeat of an accepted event costs PostgreSQL one statement: the
    ingest statement answers the repeat too, with no second read."""
    assert isinstance(store, PostgresStore)
    first = event(clock(), key="seen")
    await store.ingest([first])
    statements: list[str] = []
    fetch = asyncpg.Connection.fetch

    async def counted(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(query)
        return await fetch(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetch", counted)
    batch = [event(clock.advance(1), key="fresh"), event(clock(), key="seen")]
    results = await store.ingest(batch)
    assert [(r.outcome, r.event_id) for r in results] == [("accepted", batch[0].id), ("duplicate", first.id)]
    assert len(statements) == 1


@ONLY_POSTGRES
async def test_postgres_repeat_of_a_key_committed_while_the_insert_waited(
    store: Ports, other: Ports, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest statement's snapshot misses a key that another transaction commits while the
    insert waits for it; that delivery is read again and still answered ``duplicate``."""
    assert isinstance(store, PostgresStore) and isinstance(other, PostgresStore)
    read_again: list[list[str]] = []
    read = postgres.duplicates

    async def counted(conn: Any, items: Any) -> Any:
        read_again.append([e.idempotency_key for e in items])
        return await read(conn, items)

    monkeypatch.setattr(postgres, "duplicates", counted)
    first, again = event(clock(), key="held"), event(clock.advance(1), key="held")
    args = (
        *_pg_sql.EVENTS.arrays([first]),
        *_pg_sql.EXECUTIONS.arrays([(first, x) for x in first.executions]),
        [],
    )
    async with other._hot() as conn, conn.transaction():
        await conn.fetch(_pg_sql.INGEST, *args)  # inserted, not yet committed
        waiting = asyncio.create_task(store.ingest([again]))
        await asyncio.sleep(0.3)  # the insert now waits for this transaction
        assert not waiting.done()
    [result] = await waiting
    assert (result.outcome, result.event_id) == ("duplicate", first.id)
    assert read_again == [["held"]]


async def test_executions_carry_their_own_events_correlation_and_time(
    store: Ports, clock: Clock
) -> None:
    """Each execution of a batch takes its correlation id and its times from its own event
    (the PostgreSQL statement reads them from the inserted event rows)."""
    first = event(clock(), key="a", handlers=("fulfil", "notify"))
    batch = [
        event(clock.advance(3), key="b", handlers=("fulfil", "notify")),
        event(clock(), key="a"),  # a repeat: makes no executions
        event(clock.advance(7), key="c", handlers=("fulfil",)),
    ]
    await store.ingest([first])
    await store.ingest(batch)
    for e in (first, batch[0], batch[2]):
        for x in e.executions:
            stored = await store.get_execution(x.id)
            assert stored is not None
            assert (stored.event_id, stored.handler, stored.correlation_id) == (
                e.id, x.handler, e.correlation_id
            )
            assert stored.created_at == stored.updated_at == stored.run_after == e.received_at
    assert await store.get_execution(batch[1].executions[0].id) is None


async def test_stored_values_are_the_ones_given_byte_for_byte(store: Ports, clock: Clock) -> None:
    """What the ingest writes comes back unchanged, whatever its characters: raw body bytes
    (not UTF-8, NUL, quotes, backslashes), keys, types and headers with quotes, backslashes,
    tabs and non-ASCII text."""
    base = event(clock(), key="x", handlers=("fulfil", "notify"))
    odd = 'cl\u00e9 "q" \'s\' \\ \t \u2713 \U0001f600'
    given = dataclasses.replace(
        base,
        idempotency_key=odd,
        type=f"type {odd}",
        body=b"\x00\xff\xfe\"'\\\n{" + bytes(range(256)),
        headers={"x-odd": odd, "content-type": "application/json"},
        correlation_id="corr/+=:@.-_1",
        payload='{"s": "\\u00e9 \\" \\\\", "n": [1, 2.5, null, true]}',
        received_at=clock().replace(microsecond=123457),
    )
    [result] = await store.ingest([given])
    assert (result.outcome, result.event_id, result.executions) == ("accepted", given.id, 2)
    found = await store.get_event(given.id)
    assert found is not None
    stored, body = found
    assert body == given.body
    assert (stored.idempotency_key, stored.type) == (odd, f"type {odd}")
    assert stored.correlation_id == "corr/+=:@.-_1"
    assert stored.headers == given.headers
    assert stored.payload == {"s": '\u00e9 " \\', "n": [1, 2.5, None, True]}
    assert stored.received_at == given.received_at
    assert stored.errors is None
    [again] = await store.ingest([dataclasses.replace(given, id=uuid.uuid4())])
    assert (again.outcome, again.event_id) == ("duplicate", given.id)
