"""A wait registered while its matching event is being ingested, on two connections at once,
many rounds: the wait is never left waiting (SPEC 8: any matching event accepted after the
execution was created counts). On PostgreSQL the ingest statement takes the wait lock inside
``solo_os_resume_waiters`` (migration 0008) and reads the waits on a fresh snapshot; the
registration takes it exclusive before looking for earlier events."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

from solo_os import store as store_mod
from solo_os.core import ids, records
from solo_os.store._workflow import Suspension

ROUNDS = 12
PER_ROUND = 12


def _event(
    source: str, kind: str, key: str, data: dict[str, object], handler: str | None
) -> records.NewEvent:
    text = json.dumps(data)
    return records.NewEvent(
        id=ids.uuid7(), source=source, idempotency_key=key, type=kind, status="accepted",
        payload=text, body=text.encode(), headers={}, errors=None, correlation_id=key,
        received_at=datetime.now(UTC),
        executions=(records.NewExecution(ids.uuid7(), handler, 3),) if handler else (),
    )


async def _round(
    a: store_mod.Store, b: store_mod.Store, r: int, rng: random.Random
) -> list[tuple[UUID, UUID, bool]]:
    """``PER_ROUND`` running executions each register a wait (on ``a``) while the event it
    matches is ingested (on ``b``, in batches of 1-4 with some that match nothing). Returns
    (execution, the event it waits for, settled at once: the event was in before the wait)."""
    starts = [_event("shop", "start", f"s{r}-{i}", {"r": r, "i": i}, "checkout")
              for i in range(PER_ROUND)]
    await a.ingest(starts)
    # Earlier rounds' resumed executions are pending too: claimed here and left running.
    claimed = [c for c in await a.claim("w", 1000, datetime.now(UTC), 600) if c.document["r"] == r]
    assert len(claimed) == PER_ROUND
    order = {c.id: int(c.document["i"]) for c in claimed}
    mine = [_event("shop", "paid", f"p{r}-{i}", {"order": {"id": f"{r}-{i}"}}, None)
            for i in range(PER_ROUND)]
    paid = mine + [_event("shop", "paid", f"x{r}-{i}", {"order": {"id": "nobody"}}, None) for i in range(3)]
    rng.shuffle(paid)

    async def wait(c: records.Claimed) -> bool:
        await asyncio.sleep(rng.random() * 0.004)
        now = datetime.now(UTC)
        s = Suspension(
            execution_id=c.id, attempt=c.attempt, name="paid", kind="wait", started_at=now,
            wake_at=now + timedelta(hours=1), source="shop", type="paid",
            match={"order.id": f"{r}-{order[c.id]}"},
        )
        return await a.workflow.suspend(s, now) is not None

    async def send(batch: list[records.NewEvent]) -> None:
        await asyncio.sleep(rng.random() * 0.004)
        await b.ingest(batch)

    batches, rest = [], list(paid)
    while rest:
        n = rng.randint(1, 4)
        batches.append(rest[:n])
        rest = rest[n:]
    settled = await asyncio.gather(*(wait(c) for c in claimed), *(send(x) for x in batches))
    return [(c.id, mine[order[c.id]].id, bool(s)) for c, s in zip(claimed, settled, strict=False)]


async def test_a_wait_registered_during_its_events_ingest_is_never_missed(database_url: str) -> None:
    a, b = store_mod.connect(database_url), store_mod.connect(database_url)
    await a.start()
    await b.start()
    rng = random.Random(17)
    try:
        waits = [w for r in range(ROUNDS) for w in await _round(a, b, r, rng)]
        calls = {x: (await a.workflow.load_calls(x))["paid"] for x, _, _ in waits}
        counts = await a.counts()
    finally:
        await a.close()
        await b.close()
    assert [x for x, want, _ in waits if calls[x].event_id != want] == []
    assert {c.status for c in calls.values()} == {"done"}
    assert counts.get("waiting", 0) == 0
    # Both orders happened: some waits found their event in, others were resumed by it.
    at_once = sum(1 for _, _, s in waits if s)
    assert 0 < at_once < len(waits), at_once
