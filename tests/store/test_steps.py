"""StepPort: a step's result is kept once per (execution, name); the first record wins."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

from solo_os.store.ports import AdminPort, IngestPort, QueuePort, StepPort
from solo_os.testing import Clock
from tests.store._support import event


class Ports(IngestPort, QueuePort, StepPort, AdminPort, Protocol):
    """What these tests use of the store."""


async def test_save_and_load_steps(store: Ports, clock: Clock) -> None:
    await store.ingest([event(clock(), handlers=("a", "b"))])
    a, b = await store.claim("w", 2, clock(), 30)
    assert await store.load_steps(a.id) == {}
    await store.save_step(a.id, "charge", json.dumps({"id": "ch_1", "cents": 4900}), 1)
    await store.save_step(a.id, "email", json.dumps(None), 1)
    assert await store.load_steps(a.id) == {"charge": {"id": "ch_1", "cents": 4900}, "email": None}
    assert await store.load_steps(b.id) == {}  # per execution
    assert [s.name for s in await store.list_steps(a.id)] == ["charge", "email"]


async def test_same_name_twice_keeps_the_first_even_when_raced(
    store: Ports, other: Ports, clock: Clock
) -> None:
    await store.ingest([event(clock())])
    [c] = await store.claim("w", 1, clock(), 30)
    await asyncio.gather(
        store.save_step(c.id, "charge", json.dumps("first"), 1),
        other.save_step(c.id, "charge", json.dumps("second"), 2),
    )
    kept = (await store.load_steps(c.id))["charge"]
    assert kept in ("first", "second")
    await store.save_step(c.id, "charge", json.dumps("third"), 3)
    assert await other.load_steps(c.id) == {"charge": kept}
