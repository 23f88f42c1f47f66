"""Flow control on schedules (SPEC 7, issue 16 deliverable 1) against real stores:
``@app.cron(..., concurrency=, priority=)``, and misspelt flow options as ``ConfigError``.

The scheduler is ticked with chosen times; the store's claim stands in for a worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from solo_os import App, Concurrency, Context, errors
from solo_os import store as store_mod
from solo_os.core import flow
from solo_os.runtime import scheduler
from tests import helpers
from tests.store._support import finished

T0 = datetime(2026, 6, 1, 10, 0, 0, tzinfo=UTC)
LEASE = 30.0


def cron_app(database_url: str, **schedules: dict[str, Any]) -> App:
    app = App(service="cron-flow")
    for name, options in schedules.items():

        async def job(ctx: Context) -> None: ...

        app.cron("* * * * *", name=name, **options)(job)
    app._settings = helpers.settings_for(database_url)
    return app


async def test_cron_concurrency_one_holds_later_fires_in_order(
    database_url: str, store: store_mod.Store
) -> None:
    app = cron_app(database_url, job={"concurrency": 1})
    assert app.schedules["job"].overlap == "allow"  # the limit, not overlap, holds the fires
    store.use_flow(flow.plan(app.handlers.values()))
    sched = scheduler.Scheduler(app, store)
    await sched.tick(T0)
    for minute in (1, 2, 3):
        await sched.tick(T0 + timedelta(minutes=minute, seconds=1))
    listed = await store.list_executions(store_mod.Filters(handler="job", limit=0))
    assert len(listed) == 3 and {x.status for x in listed} == {"pending"}  # none dropped
    now = T0 + timedelta(minutes=4)
    ran: list[datetime] = []
    for _ in range(3):
        got = await store.claim("w", 10, now, LEASE)
        assert len(got) == 1  # never two fires of the schedule at once
        assert await store.claim("w2", 10, now, LEASE) == []
        assert got[0].scheduled_at is not None
        ran.append(got[0].scheduled_at)
        await store.finish("w", [finished(got[0], now, "succeeded")])
    assert ran == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]  # FIFO by fire time
    # A pending fire says why it waits: the earlier one runs.
    await sched.tick(T0 + timedelta(minutes=4, seconds=1))
    await sched.tick(T0 + timedelta(minutes=5, seconds=1))
    assert len(await store.claim("w", 10, now + timedelta(minutes=2), LEASE)) == 1
    waiting = await store.list_executions(store_mod.Filters(handler="job", status="pending", limit=0))
    assert [x.reason for x in waiting] == ["concurrency"]


async def test_cron_priority_orders_claims_and_a_scope_is_shared(
    database_url: str, store: store_mod.Store
) -> None:
    app = cron_app(
        database_url,
        low={"priority": -600, "concurrency": Concurrency(1, scope="warehouse")},
        high={"priority": 600, "concurrency": Concurrency(1, scope="warehouse")},
    )
    store.use_flow(flow.plan(app.handlers.values()))
    sched = scheduler.Scheduler(app, store)
    await sched.tick(T0)
    await sched.tick(T0 + timedelta(minutes=1, seconds=1))  # both fire; "low" is inserted first
    now = T0 + timedelta(minutes=2)
    [got] = await store.claim("w", 10, now, LEASE)
    assert got.handler == "high"  # claimed first although created after "low"
    assert await store.claim("w", 10, now, LEASE) == []  # one scope, one limit
    await store.finish("w", [finished(got, now, "succeeded")])
    [nxt] = await store.claim("w", 10, now, LEASE)
    assert nxt.handler == "low"


async def test_cron_trigger_keeps_the_limit(database_url: str, store: store_mod.Store) -> None:
    app = cron_app(database_url, job={"concurrency": 1})
    store.use_flow(flow.plan(app.handlers.values()))
    now = T0
    await scheduler.trigger(app, store, "job", now)
    await scheduler.trigger(app, store, "job", now + timedelta(seconds=1))
    assert len(await store.claim("w", 10, now + timedelta(seconds=2), LEASE)) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "Concurrency limit must be an integer >= 1, got 0"),
        ({"concurrency": "1"}, "concurrency= takes an integer >= 1 or solo_os.Concurrency"),
        ({"concurrency": Concurrency(1, key="customer_id")}, "has no payload, so Concurrency key="),
        ({"priority": 601}, "priority must be an integer from -600 to 600, got 601"),
        ({"priority": lambda x: 1}, "priority= of a schedule is an integer"),
        ({"concurency": 1}, "unknown option 'concurency'; did you mean 'concurrency'?"),
        ({"priorty": 1}, "unknown option 'priorty'; did you mean 'priority'?"),
    ],
)
def test_cron_flow_options_are_validated_at_declaration(options: dict[str, Any], message: str) -> None:
    app = App()
    with pytest.raises(errors.ConfigError) as caught:

        @app.cron("* * * * *", name="job", **options)
        def job(ctx: Context) -> None: ...

    assert message in str(caught.value)
    if "unknown option" in message:
        assert "(allowed: name, timezone, overlap" in str(caught.value)


def test_a_scope_shared_by_a_schedule_and_a_handler_has_one_limit() -> None:
    app = App()

    @app.on("internal", "sync", concurrency=Concurrency(2, scope="warehouse"))
    def on_sync(event: Any, ctx: Context) -> None: ...

    with pytest.raises(errors.ConfigError, match="scope 'warehouse' has limit 2"):
        app.cron("* * * * *", name="nightly", concurrency=Concurrency(1, scope="warehouse"))(on_sync)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: flow.Concurrency(limt=1), "Concurrency(...): unknown option 'limt'; did you mean 'limit'? "
         "(allowed: limit, key, scope)"),
        (lambda: flow.Throttle(1, 10, bust=2), "did you mean 'burst'?"),
        (lambda: flow.RateLimit(1, perid=10), "unknown option 'perid'; did you mean 'period'?"),
        (lambda: flow.Debounce(timout=5, period=1), "did you mean 'timeout'?"),
        (lambda: flow.Batch(max_size=10, timeout=5, keys="a"), "did you mean 'key'?"),
        (lambda: flow.Singleton(mod="cancel"), "did you mean 'mode'?"),
        (lambda: flow.Concurrency(), "Concurrency(...): missing a required argument: 'limit'"),
        (lambda: flow.Batch(1, 2, None, 4), "Batch(...): too many positional arguments"),
    ],
)
def test_misspelt_option_objects_raise_config_error(make: Any, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        make()
    assert message in str(caught.value)


def test_misspelt_on_option_raises_config_error() -> None:
    app = App()
    with pytest.raises(errors.ConfigError) as caught:
        app.on("internal", "sync", concurency=Concurrency(1))  # type: ignore[call-arg]
    text = str(caught.value)
    assert "@app.on('internal', 'sync'): unknown option 'concurency'; did you mean 'concurrency'?" in text
    assert "cancel_on, concurrency, throttle, rate_limit, debounce, batch, priority, singleton" in text
    with pytest.raises(errors.ConfigError, match="unknown option 'bogus'"):
        app.on("internal", "sync", bogus=1)  # type: ignore[call-arg]
