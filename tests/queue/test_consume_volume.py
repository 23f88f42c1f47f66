"""Every queue-fed source through a real broker: volume with duplicates, poison, backpressure.

- 5,000 messages with 10% duplicates per source on PostgreSQL: the stored events are the
  distinct ids, each handler ran once, and every message was acknowledged.
- The same on SQLite at a smaller volume, with poison messages (not JSON, failing the schema,
  no type): stored as ``rejected`` with their errors, and acknowledged.
- Backpressure: with a bound of pending executions and no worker, the consumer stops pulling
  near the bound; a worker draining the backlog lets it go on.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from solo_os import App
from solo_os.observability import metrics
from tests import helpers
from tests.queue import _brokers, _checks
from tests.queue.apps import orders

pytestmark = pytest.mark.timeout(120)


def _acks(kind: str) -> float:
    """Messages this process acknowledged for source ``kind`` (the consumer's own counter)."""
    return metrics.registry.get_sample_value("solo_os_consumer_acks_total", {"source": kind}) or 0.0


def _bodies(kind: str, distinct: int, duplicates: int, seed: int = 1) -> tuple[list[str], list[bytes]]:
    rng = random.Random(seed)
    refs = [f"{kind}-{i:05d}" for i in range(distinct)]
    repeats = rng.sample(refs, duplicates)
    bodies = [_brokers.message(kind, r) for r in refs + repeats]
    rng.shuffle(bodies)
    return refs, bodies


async def _run_until(
    app: App, url: str, done: Any, roles: tuple[str, ...] = ("consume", "worker"), timeout: float = 90
) -> float:
    started = time.monotonic()
    async with helpers.running(app, url, roles=roles, env={}) as h:
        await helpers.eventually(lambda: done(h.store), timeout=timeout, interval=0.2)
    return time.monotonic() - started


async def _volume(kind: str, make_kit: Any, url: str, distinct: int, duplicates: int) -> dict[str, Any]:
    kit = await make_kit(kind)
    refs, bodies = _bodies(kind, distinct, duplicates)
    await kit.publish(bodies)
    runs: Counter[tuple[str, str]] = Counter()
    app = orders.make_app(kit.env(), runs, batch_size=100)

    acked_before = _acks(kind)

    async def done(store: Any) -> bool:
        f = await _checks.figures(store, kind)
        return f["executions"].get("succeeded", 0) >= distinct and (
            _acks(kind) - acked_before >= distinct + duplicates
        )

    seconds = await _run_until(app, url, done)
    assert await kit.unacked() == 0, "every message is acknowledged"
    return {"refs": refs, "runs": runs, "seconds": seconds, "kit": kit}


# moto's SQS server spends tens of milliseconds of CPU on every call (100+ on a loaded
# machine, and more as the queue grows): 5,000 messages there take many minutes. SQS runs the
# same test at 440 messages (10% duplicates); the three real brokers at 5,000.
VOLUME = {"sqs": (400, 40), "redis": (4500, 500), "rabbitmq": (4500, 500), "nats": (4500, 500)}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("kind", _brokers.KINDS)
async def test_5000_messages_with_10_percent_duplicates_store_distinct_ids_run_once_ack_all(
    kind: str, make_kit: Any, pg_url: str
) -> None:
    distinct, duplicates = VOLUME[kind]
    out = await _volume(kind, make_kit, pg_url, distinct=distinct, duplicates=duplicates)
    async with helpers.running(orders.make_app(out["kit"].env()), pg_url, roles=(), env={}) as h:
        f = await _checks.figures(h.store, kind)
        stored = await _checks.keys(h.store, kind)
    assert f["events"] == {"accepted": distinct}, f
    ids = {orjson.loads(_brokers.message(kind, r))["id"] for r in out["refs"]}
    assert stored == ids
    assert f["executions"] == {"succeeded": distinct}, f
    assert f["max_attempts"] == 1 and f["max_executions_per_event"] == 1, f
    assert len(out["runs"]) == distinct and set(out["runs"].values()) == {1}, "each handler ran once"
    total = distinct + duplicates
    print(f"{kind}: {total} messages ({distinct} distinct) consumed and run in {out['seconds']:.1f} s")


@pytest.mark.parametrize("kind", _brokers.KINDS)
async def test_sqlite_duplicates_and_poison_messages_are_stored_and_acknowledged(
    kind: str, make_kit: Any, sqlite_url: str
) -> None:
    kit = await make_kit(kind)
    _refs, bodies = _bodies(kind, 150, 15)
    poison = [
        b"not json {at all",
        _brokers.message(kind, f"{kind}-negative", amount=-5),  # fails the schema
        orjson.dumps({"id": f"{kind}-untyped", "ref": "x", "amount": 1}),  # no type
    ]
    await kit.publish(bodies[:80] + poison + bodies[80:])
    runs: Counter[tuple[str, str]] = Counter()
    app = orders.make_app(kit.env(), runs, batch_size=50)

    async def done(store: Any) -> bool:
        f = await _checks.figures(store, kind)
        return f["executions"].get("succeeded", 0) >= 150 and f["events"].get("rejected", 0) >= 3

    await _run_until(app, sqlite_url, done)
    assert await kit.unacked() == 0, "poison messages are acknowledged too: the queue never wedges"
    async with helpers.running(orders.make_app(kit.env()), sqlite_url, roles=(), env={}) as h:
        f = await _checks.figures(h.store, kind)
        listed = await h.store.list_events(_filters(source=kind, status="rejected"))
        events = [(await h.store.get_event(e.id))[0] for e in listed]
    assert f["events"] == {"accepted": 150, "rejected": 3}, f
    assert f["executions"] == {"succeeded": 150} and f["max_executions_per_event"] == 1, f
    assert set(runs.values()) == {1} and len(runs) == 150
    kinds = sorted(e["type"] for ev in events for e in (ev.errors or []))
    assert "json_invalid" in kinds and "missing" in kinds and "greater_than_equal" in kinds, kinds


def _filters(**kw: Any) -> Any:
    from solo_os.store import Filters

    return Filters(limit=0, **kw)


@pytest.mark.parametrize("kind", ["redis"])
async def test_backpressure_stops_pulling_past_the_pending_bound(
    kind: str, make_kit: Any, sqlite_url: str
) -> None:
    kit = await make_kit(kind)
    _, bodies = _bodies(kind, 600, 0)
    await kit.publish(bodies)
    app = orders.make_app(kit.env(), batch_size=20, max_pending=50)

    async def paused(store: Any) -> bool:
        f = await _checks.figures(store, kind)
        return f["executions"].get("pending", 0) > 50

    async with helpers.running(app, sqlite_url, roles=("consume",), env={}) as h:
        await helpers.eventually(lambda: paused(h.store), timeout=30)
        await _sleep(1.5)  # several backlog checks: it stays paused
        f = await _checks.figures(h.store, kind)
        left = await kit.unacked()
    # it pulled at most one more batch after the backlog passed the bound
    assert 50 < f["executions"]["pending"] <= 50 + 2 * 20, f
    assert left >= 600 - 90, "the rest stays in the broker"

    async def drained(store: Any) -> bool:
        f = await _checks.figures(store, kind)
        return f["executions"].get("succeeded", 0) >= 600

    await _run_until(app, sqlite_url, drained)
    assert await kit.unacked() == 0


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
