"""An operator's actions keep flow control (SPEC 7, issue 16) on SQLite and PostgreSQL: a
resent event's, a rerun's and a replayed execution's flow key, scope and priority; a rerun of a
Batch execution gets its batch; events sent from inside (``app.send``, ``ctx.send``) are held
like deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from solo_os import App, Batch, Concurrency, Context
from solo_os import store as store_mod
from solo_os.core import flow
from solo_os.ops import budgets, errors, replay, rerun
from solo_os.runtime import attempt
from solo_os.store import _schema
from solo_os.testing import Clock
from tests import helpers
from tests.store._support import finished

LEASE = 30.0
ex = _schema.executions


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))


def flow_app(database_url: str, store: store_mod.Store) -> App:
    app = App(service="flow-admin")

    @app.on("internal", "sub.changed", concurrency=Concurrency(1, key="customer", scope="subs"),
            priority=lambda e: int(e.get("urgent", 0)))
    def change(event: dict[str, Any], ctx: Context) -> None: ...

    @app.on("internal", "order.paid", batch=Batch(max_size=3, timeout=60))
    def load(events: list[dict[str, Any]], ctx: Context) -> None: ...

    app._settings = helpers.settings_for(database_url)
    store.use_flow(flow.plan(app.handlers.values()))
    return app


async def send(app: App, store: store_mod.Store, now: datetime, type_: str, data: Any) -> Any:
    event = app.new_event("internal", type_, data, key=f"k{now.timestamp()}{data}",
                          correlation_id="c", received_at=now)
    await store.ingest([event])
    return event


async def test_events_sent_from_inside_are_held_by_the_limit(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    app = flow_app(database_url, store)
    await send(app, store, clock(), "sub.changed", {"customer": "a", "n": 1})
    await send(app, store, clock.advance(seconds=1), "sub.changed", {"customer": "a", "n": 2})
    [first] = await store.claim("w", 10, clock(), LEASE)
    assert first.document == {"customer": "a", "n": 1}
    assert await store.claim("w", 10, clock(), LEASE) == []  # one per customer at a time


async def test_a_resent_event_keeps_its_key_scope_and_priority(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    app = flow_app(database_url, store)
    event = await send(app, store, clock(), "sub.changed", {"customer": "a", "urgent": 30})
    [running] = await store.claim("w", 10, clock(), LEASE)
    [again] = await rerun.resend(app, store, event.id, clock.advance(seconds=1))
    assert await store.claim("w", 10, clock(), LEASE) == []  # its key is busy: it waits
    [listed] = await store.list_executions(store_mod.Filters(status="pending", limit=0))
    assert listed.id == again and listed.reason == "concurrency"
    async with store._read() as conn:
        stored = (await conn.execute(
            sa.select(ex.c.flow_key, ex.c.priority).where(ex.c.id.in_([running.id, again]))
        )).all()
    assert [tuple(r) for r in stored] == [("subs\x1fa", 30)] * 2  # scope, key, priority kept
    await store.finish("w", [finished(running, clock(), "succeeded")])
    [nxt] = await store.claim("w", 1, clock.advance(seconds=1), LEASE)
    assert nxt.id == again


async def test_a_resend_whose_key_cannot_be_evaluated_is_refused(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    app = flow_app(database_url, store)
    event = await send(app, store, clock(), "sub.changed", {"n": 1})  # no customer
    [dead] = await store.list_executions(store_mod.Filters(limit=0))
    assert dead.status == "dead" and "FlowKeyError" in (dead.last_error or "")
    with pytest.raises(errors.Conflict, match="'customer' is missing"):
        await rerun.resend(app, store, event.id, clock())


async def test_a_replayed_dead_execution_keeps_its_key(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    app = flow_app(database_url, store)
    await send(app, store, clock(), "sub.changed", {"customer": "a", "n": 1})
    [one] = await store.claim("w", 10, clock(), LEASE)
    await store.finish("w", [finished(one, clock(), "dead")])
    await send(app, store, clock.advance(seconds=1), "sub.changed", {"customer": "a", "n": 2})
    [two] = await store.claim("w", 10, clock(), LEASE)
    done = await replay.replay(store, [one.id], budgets.of_app(app), clock())
    assert done.replayed == (one.id,)
    assert await store.claim("w", 10, clock(), LEASE) == []  # "a" runs: the replay waits
    await store.finish("w", [finished(two, clock(), "succeeded")])
    [back] = await store.claim("w", 10, clock(), LEASE)
    assert back.id == one.id


async def test_rerun_of_a_batch_execution_gets_its_batch(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    app = flow_app(database_url, store)
    for i in range(3):
        await send(app, store, clock.advance(seconds=1), "order.paid", {"order": i})
    [batch] = await store.claim("w", 10, clock(), LEASE)
    assert batch.batch == ({"order": 0}, {"order": 1}, {"order": 2})
    await store.finish("w", [finished(batch, clock(), "succeeded")])
    new_id = await rerun.rerun(app, store, batch.id, clock())
    [again] = await store.claim("w", 10, clock(), LEASE)
    assert again.id == new_id and again.batch == batch.batch  # the same events, same order


async def test_resend_to_a_batch_handler_runs_a_batch_of_that_event(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    app = flow_app(database_url, store)
    event = await send(app, store, clock(), "order.paid", {"order": 7})
    [new_id] = await rerun.resend(app, store, event.id, clock.advance(seconds=1))
    got = {c.id: c for c in await store.claim("w", 10, clock.advance(seconds=61), LEASE)}
    assert len(got) == 2  # the original batch (timed out) and the resend
    handler = app.handlers["load"]
    assert attempt.argument(app, handler, got[new_id]) == [{"order": 7}]  # a list, as always
    [original] = [c for i, c in got.items() if i != new_id]
    assert attempt.argument(app, handler, original) == [{"order": 7}]


async def test_a_replay_after_a_key_fix_evaluates_the_key_again(
    database_url: str, store: store_mod.Store, clock: Clock
) -> None:
    broken = flow_app(database_url, store)  # key "customer": these events carry "client"
    await send(broken, store, clock(), "sub.changed", {"client": "x", "n": 1})
    await send(broken, store, clock(), "sub.changed", {"other": "y", "n": 2})
    dead = {x.id: x for x in await store.list_executions(store_mod.Filters(limit=0))}
    assert {x.status for x in dead.values()} == {"dead"}
    fixed = App(service="flow-admin")  # the fix: the right key path

    @fixed.on("internal", "sub.changed", concurrency=Concurrency(1, key="client", scope="subs"))
    def change(event: dict[str, Any], ctx: Context) -> None: ...

    fixed._settings = helpers.settings_for(database_url)
    store.use_flow(flow.plan(fixed.handlers.values()))
    await send(fixed, store, clock.advance(seconds=1), "sub.changed", {"client": "x", "n": 3})
    [running] = await store.claim("w", 10, clock(), LEASE)
    ids_by_n = {}
    for i, x in dead.items():
        assert x.event_id is not None
        found = await store.get_event(x.event_id)
        assert found is not None
        ids_by_n[found[0].payload["n"]] = i
    with pytest.raises(errors.Conflict, match="still cannot be evaluated: key 'client'"):
        await replay.replay_one(store, ids_by_n[2], budgets.of_app(fixed), clock())
    done = await replay.replay(store, list(dead), budgets.of_app(fixed), clock())
    assert done.replayed == (ids_by_n[1],)  # the one still without a key stays dead
    assert await store.claim("w", 10, clock(), LEASE) == []  # keyed again: "x" is busy
    await store.finish("w", [finished(running, clock(), "succeeded")])
    [back] = await store.claim("w", 10, clock(), LEASE)
    assert back.id == ids_by_n[1]
