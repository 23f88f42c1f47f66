"""Flow control in the store (SPEC section 7), on SQLite and PostgreSQL: ingest decisions
(rate limit, singleton, debounce, batch, a key that cannot be evaluated) and the flow claim
(concurrency with FIFO and fairness, throttle, priority). Time is the test clock."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from solo_os import store as store_mod
from solo_os.core import flow, ids, records
from solo_os.testing import Clock
from tests.store._support import finished

LEASE = 30.0


def ev(now: datetime, payload: dict[str, Any], **opts: Any) -> records.NewEvent:
    """A delivery for handler ``h`` with flow options ``opts`` (keys evaluated as ingress does)."""
    options = flow.Options(**opts)
    text = json.dumps(payload)
    return records.NewEvent(
        id=uuid.uuid4(),
        source="shop",
        idempotency_key=uuid.uuid4().hex,
        type="t",
        status="accepted",
        payload=text,
        body=text.encode(),
        headers={},
        errors=None,
        correlation_id=uuid.uuid4().hex,
        received_at=now,
        executions=(records.NewExecution(ids.uuid7(), "h", 3, options.mark("h", payload)),),
    )


def use(store: Any, **opts: Any) -> None:
    class H:
        name = "h"
        flow = flow.Options(**opts)

    store.use_flow(flow.plan([H()]))


async def statuses(store: store_mod.Store) -> dict[str, int]:
    listed = await store.list_executions(store_mod.Filters(limit=0))
    out: dict[str, int] = {}
    for x in listed:
        out[x.status] = out.get(x.status, 0) + 1
    return out


async def test_plain_claim_leaves_flow_executions_to_the_flow_claim(
    store: store_mod.Store, other: store_mod.Store, clock: Clock
) -> None:
    c = flow.Concurrency(1)
    await store.ingest([ev(clock(), {"n": 1}, concurrency=c)])
    assert await other.claim("w", 10, clock(), LEASE) == []  # no plan: never taken
    use(store, concurrency=c)
    [got] = await store.claim("w", 10, clock(), LEASE)
    assert got.handler == "h"


async def test_concurrency_per_key_fifo_and_a_hot_key_does_not_starve_others(
    store: store_mod.Store, clock: Clock
) -> None:
    c = flow.Concurrency(1, key="customer")
    use(store, concurrency=c)
    hot = [ev(clock.advance(seconds=1), {"customer": "hot", "i": i}, concurrency=c) for i in range(30)]
    cold = [ev(clock.advance(seconds=1), {"customer": f"c{i}", "i": i}, concurrency=c) for i in range(5)]
    await store.ingest(hot)
    await store.ingest(cold)
    first = await store.claim("w", 4, clock(), LEASE)  # the hot key fills the window's front
    keys = [c.document["customer"] for c in first]
    assert keys.count("hot") == 1 and first[0].document == {"customer": "hot", "i": 0}
    more = await store.claim("w", 10, clock(), LEASE)
    assert sorted(c.document["customer"] for c in more) == sorted({f"c{i}" for i in range(5)} - set(keys))
    assert await store.claim("w", 10, clock(), LEASE) == []  # every key is at its limit
    hot_one = next(c for c in first if c.document["customer"] == "hot")
    await store.finish("w", [finished(hot_one, clock(), "succeeded")])
    [nxt] = await store.claim("w", 10, clock(), LEASE)
    assert nxt.document == {"customer": "hot", "i": 1}  # FIFO per key
    # A released (graceful shutdown) or reaped (lease expired) execution gives its slot back.
    assert await store.release("w", [nxt.id]) == 1
    later = store_mod.utcnow() + timedelta(seconds=1)  # release stamps the wall clock
    [again] = await store.claim("w2", 10, later, LEASE)
    assert again.id == nxt.id
    await store.reap(later + timedelta(seconds=LEASE + 1))
    retaken = await store.claim("w3", 10, later + timedelta(seconds=LEASE + 1), LEASE)
    hot_again = [c for c in retaken if c.document["customer"] == "hot"]
    assert [c.id for c in hot_again] == [nxt.id]  # reaped: still one per key, same head


async def test_concurrency_without_key_and_scope_shares_the_limit(
    store: store_mod.Store, clock: Clock
) -> None:
    c = flow.Concurrency(3)
    use(store, concurrency=c)
    await store.ingest([ev(clock(), {"i": i}, concurrency=c) for i in range(10)])
    assert len(await store.claim("w", 10, clock(), LEASE)) == 3
    assert await store.claim("w", 10, clock(), LEASE) == []


async def test_throttle_starts_at_most_capacity_per_window_and_drops_nothing(
    store: store_mod.Store, clock: Clock
) -> None:
    t = flow.Throttle(2, 10, burst=1)
    use(store, throttle=t)
    await store.ingest([ev(clock(), {"i": i}, throttle=t) for i in range(7)])
    starts: list[tuple[datetime, int]] = []
    for _ in range(40):
        for c in await store.claim("w", 10, clock(), LEASE):
            starts.append((clock(), c.document["i"]))
            await store.finish("w", [finished(c, clock(), "succeeded")])
        clock.advance(seconds=1)
    assert [i for _, i in starts] == list(range(7))  # all of them, in order
    for at, _ in starts:
        window = [s for s, _ in starts if at <= s < at + timedelta(seconds=10)]
        assert len(window) <= 3


async def test_rate_limit_skips_exactly_the_excess(store: store_mod.Store, clock: Clock) -> None:
    r = flow.RateLimit(3, 60, key="k")
    await store.ingest([ev(clock(), {"k": "a"}, rate_limit=r) for _ in range(5)])
    await store.ingest([ev(clock(), {"k": "b"}, rate_limit=r) for _ in range(2)])
    assert await statuses(store) == {"pending": 5, "skipped": 2}
    skipped = await store.list_executions(store_mod.Filters(status="skipped", limit=0))
    assert all((x.last_error or "").startswith("rate_limited") for x in skipped)
    await store.ingest([ev(clock.advance(seconds=61), {"k": "a"}, rate_limit=r)])
    assert (await statuses(store))["pending"] == 6


async def test_debounce_runs_once_with_the_last_event_and_timeout_bounds_it(
    store: store_mod.Store, clock: Clock
) -> None:
    d = flow.Debounce(10, key="k", timeout=25)
    t0 = clock()
    for i in range(4):  # 0, 8, 16, 24 s: each within the period of the one before
        await store.ingest([ev(clock.advance(seconds=0 if i == 0 else 8), {"k": "a", "i": i}, debounce=d)])
    await store.ingest([ev(clock(), {"k": "other"}, debounce=d)])
    assert await statuses(store) == {"pending": 2, "skipped": 3}
    assert await store.claim("w", 10, clock(), LEASE) == []
    [c] = await store.claim("w", 10, t0 + timedelta(seconds=25), LEASE)  # the timeout, not 24+10
    assert c.document == {"k": "a", "i": 3}  # the latest event
    [o] = await store.claim("w", 10, clock.advance(seconds=10), LEASE)
    assert o.document == {"k": "other"}


async def test_singleton_skip_and_cancel(store: store_mod.Store, clock: Clock) -> None:
    skip = flow.Singleton(key="k")
    await store.ingest([ev(clock(), {"k": "a"}, singleton=skip) for _ in range(3)])
    assert await statuses(store) == {"pending": 1, "skipped": 2}
    cancel = flow.Singleton(key="k", mode="cancel")
    await store.ingest([ev(clock(), {"k": "b", "i": i}, singleton=cancel) for i in range(3)])
    assert await statuses(store) == {"pending": 2, "skipped": 2, "cancelled": 2}


async def test_batch_hands_lists_each_event_in_exactly_one(store: store_mod.Store, clock: Clock) -> None:
    b = flow.Batch(4, 30)
    use(store, batch=b)
    for i in range(10):
        await store.ingest([ev(clock.advance(seconds=1), {"i": i}, batch=b)])
    got = await store.claim("w", 10, clock(), LEASE)  # two full batches are due at once
    assert [len(c.batch or ()) for c in got] == [4, 4]
    assert await store.claim("w", 10, clock.advance(seconds=28), LEASE) == []  # opened at 9 s
    [last] = await store.claim("w", 10, clock.advance(seconds=1), LEASE)
    seen = [d["i"] for c in [*got, last] for d in (c.batch or ())]
    assert sorted(seen) == list(range(10)) and len(seen) == 10


async def test_priority_orders_claims(store: store_mod.Store, clock: Clock) -> None:
    use(store, priority=lambda p: p["p"])
    await store.ingest(
        [ev(clock.advance(seconds=1), {"p": p}, priority=lambda x: x["p"]) for p in (0, -5, 30, 5)]
    )
    got = await store.claim("w", 10, clock(), LEASE)
    assert [c.document["p"] for c in got] == [30, 5, 0, -5]


async def test_a_key_missing_from_the_payload_stores_a_dead_execution(
    store: store_mod.Store, clock: Clock
) -> None:
    [res] = await store.ingest(
        [ev(clock(), {"other": 1}, concurrency=flow.Concurrency(1, key="customer_id"))]
    )
    assert res.outcome == "accepted"
    [x] = await store.list_executions(store_mod.Filters(limit=0))
    assert x.status == "dead" and "customer_id" in (x.last_error or "")


@pytest.mark.parametrize(
    "bad",
    [
        lambda: flow.Concurrency(0),
        lambda: flow.Throttle(1, 0),
        lambda: flow.RateLimit(1, -1),
        lambda: flow.Concurrency(1, key="a..b"),
        lambda: flow.Debounce(10, timeout=5),
    ],
)
def test_bad_options_fail_at_start(bad: Any) -> None:
    from solo_os import errors

    with pytest.raises(errors.ConfigError):
        bad()


async def test_throttle_holds_across_two_stores(
    store: store_mod.Store, other: store_mod.Store, clock: Clock
) -> None:
    t = flow.Throttle(4, 1.0)
    use(store, throttle=t)
    use(other, throttle=t)
    await store.ingest([ev(clock(), {"i": i}, throttle=t) for i in range(12)])
    assert len(await store.claim("w1", 10, clock(), LEASE)) == 4
    assert await other.claim("w2", 10, clock.advance(seconds=0.3), LEASE) == []
    assert await store.claim("w1", 10, clock.advance(seconds=0.3), LEASE) == []
    assert len(await other.claim("w2", 10, clock.advance(seconds=0.5), LEASE)) == 4


async def test_a_lost_execution_runs_alone_and_its_key_waits_for_it(
    store: store_mod.Store, clock: Clock
) -> None:
    c = flow.Concurrency(2, key="k")
    use(store, concurrency=c)
    events = [ev(clock.advance(seconds=1), {"k": k, "i": i}, concurrency=c)
              for k, i in (("a", 0), ("a", 1), ("a", 2), ("b", 0))]
    await store.ingest(events)
    [first] = await store.claim("dies", 1, clock(), 1.0, lost=False)
    assert first.document == {"k": "a", "i": 0}
    [reaped] = await store.reap(clock.advance(seconds=5))  # its process was kill -9'd
    assert reaped.losses == 1 and await store.lost_due(clock())
    # Its neighbours never run beside it: the key waits for its lost head (FIFO per key).
    others = await store.claim("w", 10, clock(), LEASE, lost=False)
    assert [x.document for x in others] == [{"k": "b", "i": 0}]
    again = await store.claim("alone", 10, clock(), LEASE, lost=True)  # one, lost before
    assert [(x.id, x.losses) for x in again] == [(first.id, 1)]
    assert not await store.lost_due(clock())
    # Running (alone in its worker), it holds one of the key's two slots.
    [nxt] = await store.claim("w", 10, clock(), LEASE, lost=False)
    assert nxt.document == {"k": "a", "i": 1}
    assert await store.claim("w", 10, clock(), LEASE, lost=False) == []
