"""RetentionPort: what prune deletes (finished, old) and what it keeps (open, dead, keys)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from solo_os.store import Filters
from solo_os.store.ports import IngestPort, QueuePort, ReadPort, RetentionPort
from solo_os.testing import Clock
from tests.store._support import event, finished


class Ports(IngestPort, QueuePort, RetentionPort, ReadPort, Protocol):
    """What these tests use of the store."""


async def test_prune_rules(store: Ports) -> None:
    # finish stamps the real time, so this test's times are set around it
    real = datetime.now(UTC)
    clock = Clock(real - timedelta(days=30))
    received = clock()
    await store.ingest([event(received, key="done", handlers=("ok",))])
    await store.ingest([event(received, key="dead", handlers=("die",))])
    await store.ingest([event(received, key="open", handlers=("ok", "wait"))])
    await store.ingest([event(real - timedelta(days=1), key="recent", handlers=("ok",))])
    claimed = await store.claim("w", 10, real, 30)
    keep_waiting = next(c for c in claimed if c.handler == "wait")
    await store.finish(
        "w",
        [
            finished(c, clock(), "dead" if c.handler == "die" else "succeeded")
            for c in claimed
            if c is not keep_waiting
        ]
        + [finished(keep_waiting, clock(), "pending")],
    )
    now = real + timedelta(days=2)  # keep one day of executions: all finished ones go
    dry = await store.prune(timedelta(days=1), dry_run=True, now=now)
    assert (dry.executions, dry.dry_run) == (3, True)  # done/ok, open/ok, recent/ok
    assert dry.execution_cutoff == now - timedelta(days=1)
    assert dry.event_cutoff == now - timedelta(days=7)  # the idempotency floor
    assert len(await store.matching_ids(Filters(limit=0))) == 5  # a dry run deletes nothing

    result = await store.prune(timedelta(days=1), now=now, batch_size=1)
    assert (result.executions, result.events) == (dry.executions, dry.events)
    left = {x.handler: x.status for x in await store.list_executions(Filters(limit=0))}
    assert left == {"die": "dead", "wait": "pending"}
    keys = {e.idempotency_key for e in await store.list_events(Filters(limit=0))}
    # "done" goes (old, nothing stays); "dead" and "open" have executions that stay;
    # "recent" is younger than the idempotency floor
    assert keys == {"dead", "open", "recent"}
    assert result.events == 1

    with_dead = await store.prune(timedelta(days=1), include_dead=True, now=now)
    assert with_dead.executions == 1
    assert [x.handler for x in await store.list_executions(Filters(limit=0))] == ["wait"]
