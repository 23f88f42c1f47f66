"""The scheduler against real stores: exactly once, overlap, catch-up, pause, trigger, backfill.

Time is injected: each test calls ``Scheduler.tick(now)`` with the times it wants, so a
two-hour outage costs nothing. One test runs the real loop with a worker, in real time.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from solo_os import App, Context, Retry, _loader, alerts
from solo_os import store as store_mod
from solo_os.runtime import scheduler
from solo_os.store import _schema
from tests import helpers

T0 = datetime(2026, 6, 1, 10, 0, 0, tzinfo=UTC)


def cron_app(database_url: str, expr: str = "*/10 * * * *", **options: Any) -> App:
    app = App(service="cron-test")

    @app.cron(expr, name="job", **options)
    async def job(ctx: Context) -> None: ...

    app._settings = helpers.settings_for(database_url)
    return app


@pytest.fixture
async def second_store(database_url: str) -> AsyncIterator[store_mod.Store]:
    s = store_mod.connect(database_url)
    try:
        yield s
    finally:
        await s.close()


async def fires(store: store_mod.Store) -> list[tuple[datetime, str, str]]:
    return [(f.fire_at, f.kind, f.status) for f in await store.list_fires("job", limit=0)]


async def executions(store: store_mod.Store) -> list[Any]:
    found = await store.list_executions(store_mod.Filters(handler="job", limit=0))
    return sorted(found, key=lambda x: x.created_at)


async def finish_all(store: store_mod.Store, status: str = "succeeded") -> None:
    """Stand in for a worker: every pending or running execution of ``job`` ends."""
    ex = _schema.executions
    async with store._write() as conn:
        await conn.execute(
            sa.update(ex)
            .where(ex.c.handler == "job", ex.c.status.in_(("pending", "running")))
            .values(status=status, last_error="RuntimeError: boom" if status == "dead" else None)
        )


async def start(sched: scheduler.Scheduler, at: datetime = T0) -> None:
    """The first tick registers the schedule: it fires from ``at`` on."""
    await sched.tick(at)


async def test_competing_schedulers_fire_each_time_once(
    database_url: str, store: store_mod.Store, second_store: store_mod.Store
) -> None:
    app = cron_app(database_url, "* * * * * *", overlap="allow")
    a = scheduler.Scheduler(app, store)
    b = scheduler.Scheduler(app, second_store)
    await start(a)
    for i in range(1, 31):
        now = T0 + timedelta(seconds=i, milliseconds=5)
        await asyncio.gather(a.tick(now), b.tick(now), a.tick(now))
    got = await fires(store)
    assert [t for t, _, _ in got] == [T0 + timedelta(seconds=i) for i in range(1, 31)]
    assert {s for _, _, s in got} == {"fired"}
    xs = await executions(store)
    assert len(xs) == 30 and len({x.id for x in xs}) == 30
    assert all(x.event_id is None and x.status == "pending" for x in xs)
    first = await store.list_fires("job", limit=1)
    x = await store.get_execution(first[0].execution_id)
    assert x is not None and x.correlation_id == "cron:job:2026-06-01T10:00:01Z"


async def test_overlap_skip_records_the_skipped_fire(database_url: str, store: store_mod.Store) -> None:
    app = cron_app(database_url, "* * * * * *")  # overlap="skip" is the default
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    await sched.tick(T0 + timedelta(seconds=1))  # fires; nobody runs it
    await sched.tick(T0 + timedelta(seconds=2))  # the previous run is still pending
    await sched.tick(T0 + timedelta(seconds=3))
    await finish_all(store)
    await sched.tick(T0 + timedelta(seconds=4))  # free again
    assert [s for _, _, s in await fires(store)] == ["fired", "skipped", "skipped", "fired"]
    assert len(await executions(store)) == 2


async def test_overlap_allow_runs_side_by_side(database_url: str, store: store_mod.Store) -> None:
    app = cron_app(database_url, "* * * * * *", overlap="allow")
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    for i in (1, 2, 3):
        await sched.tick(T0 + timedelta(seconds=i))
    assert [s for _, _, s in await fires(store)] == ["fired"] * 3
    assert len(await executions(store)) == 3


async def test_overlap_queue_holds_fires_until_the_previous_finishes(
    database_url: str, store: store_mod.Store
) -> None:
    app = cron_app(database_url, "* * * * * *", overlap="queue")
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    for i in (1, 2, 3):
        await sched.tick(T0 + timedelta(seconds=i))
    assert [s for _, _, s in await fires(store)] == ["fired", "queued", "queued"]
    assert len(await executions(store)) == 1
    await sched.tick(T0 + timedelta(seconds=3, milliseconds=500))  # still running: nothing moves
    assert len(await executions(store)) == 1
    await finish_all(store)
    await sched.tick(T0 + timedelta(seconds=3, milliseconds=600))  # the oldest queued one starts
    xs = await executions(store)
    assert len(xs) == 2
    second = await store.get_execution(xs[1].id)
    assert second is not None and second.correlation_id == "cron:job:2026-06-01T10:00:02Z"
    await finish_all(store)
    await sched.tick(T0 + timedelta(seconds=3, milliseconds=700))
    assert [s for _, _, s in await fires(store)] == ["fired"] * 3
    assert len(await executions(store)) == 3


# --- catch-up after a 2-hour outage --------------------------------------------------------------

OUTAGE_END = T0 + timedelta(hours=2, minutes=15)  # last fire 10:10, back at 12:15
MISSED = [T0 + timedelta(minutes=m) for m in range(20, 131, 10)]  # 10:20 ... 12:10, 12 fires


async def outage(database_url: str, store: store_mod.Store, **options: Any) -> scheduler.Scheduler:
    app = cron_app(database_url, "*/10 * * * *", **options)
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    await sched.tick(T0 + timedelta(minutes=10))  # on time
    await finish_all(store)
    await sched.tick(OUTAGE_END)  # the scheduler was down for two hours
    await sched.tick(OUTAGE_END + timedelta(seconds=1))  # a second pass adds nothing
    return sched


async def test_catchup_none_runs_nothing_missed_and_records_the_miss(
    database_url: str, store: store_mod.Store
) -> None:
    await outage(database_url, store, catchup="none")
    rows = await store.list_fires("job", limit=0)
    assert [(f.fire_at, f.status) for f in rows] == [
        (T0 + timedelta(minutes=10), "fired"), (MISSED[-1], "missed"),
    ]
    assert rows[-1].missed_count == 12 and rows[-1].missed_from == MISSED[0]
    assert len(await executions(store)) == 1


async def test_catchup_latest_runs_the_latest_missed_fire(database_url: str, store: store_mod.Store) -> None:
    await outage(database_url, store, catchup="latest")
    rows = await store.list_fires("job", limit=0)
    assert [(f.fire_at, f.kind, f.status) for f in rows] == [
        (T0 + timedelta(minutes=10), "scheduled", "fired"),
        (MISSED[-2], "scheduled", "missed"),
        (MISSED[-1], "catchup", "fired"),
    ]
    assert rows[1].missed_count == 11 and rows[1].missed_from == MISSED[0]
    xs = await executions(store)
    assert len(xs) == 2
    assert xs[-1].correlation_id == "cron:job:2026-06-01T12:10:00Z"


async def test_catchup_all_runs_every_missed_fire(database_url: str, store: store_mod.Store) -> None:
    await outage(database_url, store, catchup="all", overlap="allow")
    rows = await store.list_fires("job", limit=0)
    assert [(f.fire_at, f.kind) for f in rows[1:]] == [(t, "catchup") for t in MISSED]
    assert {f.status for f in rows} == {"fired"}
    assert len(await executions(store)) == 13


async def test_catchup_all_queues_rather_than_skips(database_url: str, store: store_mod.Store) -> None:
    await outage(database_url, store, catchup="all")  # overlap="skip"
    statuses = [f.status for f in await store.list_fires("job", limit=0)]
    assert statuses == ["fired", "fired", *["queued"] * 11]


async def test_catchup_window_bounds_what_is_caught_up(database_url: str, store: store_mod.Store) -> None:
    await outage(database_url, store, catchup="all", overlap="allow", catchup_window=timedelta(hours=1))
    rows = await store.list_fires("job", limit=0)
    missed = [f for f in rows if f.status == "missed"]
    assert len(missed) == 1 and missed[0].missed_count == 6  # 10:20 ... 11:10
    assert missed[0].missed_from == MISSED[0] and missed[0].fire_at == MISSED[5]
    assert [f.fire_at for f in rows if f.kind == "catchup"] == MISSED[6:]


async def test_a_slightly_late_scheduler_still_runs_every_fire(
    database_url: str, store: store_mod.Store
) -> None:
    app = cron_app(database_url, "* * * * * *", catchup="none", overlap="allow")
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    await sched.tick(T0 + timedelta(seconds=20))  # 20 s late: within the grace, nothing missed
    rows = await store.list_fires("job", limit=0)
    assert [f.status for f in rows] == ["fired"] * 20


async def test_missed_fires_raise_an_alert(database_url: str, store: store_mod.Store) -> None:
    app = cron_app(database_url, "*/10 * * * *", catchup="latest")
    app.alerts(alerts.webhook(url_env="HOOK"), group_wait=timedelta(0))
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    await sched.tick(OUTAGE_END)
    await sched.tick(OUTAGE_END + timedelta(seconds=1))
    await store.close_alerts(OUTAGE_END + timedelta(seconds=2), ["webhook"])
    found = await store.list_alerts()
    assert len(found) == 1
    alert = found[0]
    assert (alert.kind, alert.subject, alert.total) == ("schedule_missed", "job", 1)
    assert alert.samples and alert.samples[0]["missed"] == 12
    assert alert.deliveries == {"webhook": "pending"}


# --- pause, trigger, backfill ------------------------------------------------------------------------


async def test_pause_stops_every_scheduler_and_resume_does_not_catch_up(
    database_url: str, store: store_mod.Store, second_store: store_mod.Store
) -> None:
    app = cron_app(database_url, "* * * * * *", overlap="allow")
    a, b = scheduler.Scheduler(app, store), scheduler.Scheduler(app, second_store)
    await start(a)
    await a.tick(T0 + timedelta(seconds=1))
    assert await store.set_paused("job", True, T0 + timedelta(seconds=1, milliseconds=500))
    assert not await store.set_paused("job", True, T0 + timedelta(seconds=1, milliseconds=600))
    for i in range(2, 6):
        await a.tick(T0 + timedelta(seconds=i))
        await b.tick(T0 + timedelta(seconds=i))
    assert len(await fires(store)) == 1
    assert (await store.schedule_info(["job"]))["job"].paused
    assert await store.set_paused("job", False, T0 + timedelta(seconds=5, milliseconds=500))
    await b.tick(T0 + timedelta(seconds=7))
    got = [t for t, _, _ in await fires(store)]
    assert got == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=6), T0 + timedelta(seconds=7)]


async def test_trigger_runs_now_and_leaves_the_schedule_alone(
    database_url: str, store: store_mod.Store
) -> None:
    app = cron_app(database_url, "*/10 * * * *")
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    now = T0 + timedelta(minutes=9, seconds=59, milliseconds=999)
    xid = await scheduler.trigger(app, store, "job", now)
    x = await store.get_execution(xid)
    assert x is not None and x.status == "pending" and x.event_id is None
    await finish_all(store)
    await sched.tick(T0 + timedelta(minutes=10))  # the 10:10 fire is not displaced by the manual one
    assert [(t, k) for t, k, _ in await fires(store)] == [
        (now, "manual"), (T0 + timedelta(minutes=10), "scheduled"),
    ]
    info = (await store.schedule_info(["job"]))["job"]
    assert info.last_kind == "scheduled" and info.last_result == "pending"


async def test_backfill_is_idempotent_and_queues_by_default(
    database_url: str, store: store_mod.Store
) -> None:
    app = cron_app(database_url, "0 * * * *")
    sched = scheduler.Scheduler(app, store)
    schedule = app.schedules["job"]
    times = scheduler.backfill_times(schedule, T0 - timedelta(hours=5), T0 - timedelta(hours=2))
    assert times == [T0 - timedelta(hours=h) for h in (5, 4, 3, 2)]
    first = await scheduler.backfill(app, store, "job", times, now=T0, queue=True)
    assert (first.created, first.existing, len(first.executions)) == (4, 0, 0)
    wider = scheduler.backfill_times(schedule, T0 - timedelta(hours=6), T0 - timedelta(hours=1))
    again = await scheduler.backfill(app, store, "job", wider, now=T0, queue=True)
    assert (again.fires, again.created, again.existing) == (6, 2, 4)
    assert len(await store.list_fires("job", limit=0)) == 6
    # the scheduler works the queue off one at a time, oldest first
    seen = []
    for i in range(6):
        await sched.tick(T0 + timedelta(seconds=i + 1))
        xs = await executions(store)
        seen.append(len(xs))
        await finish_all(store)
    assert seen == [1, 2, 3, 4, 5, 6]
    xs = await executions(store)
    assert [x.correlation_id for x in xs][:2] == [
        "cron:job:2026-06-01T04:00:00Z", "cron:job:2026-06-01T05:00:00Z",
    ]


async def test_parallel_backfill_starts_everything(database_url: str, store: store_mod.Store) -> None:
    app = cron_app(database_url, "0 * * * *")
    times = scheduler.backfill_times(app.schedules["job"], T0 - timedelta(hours=3), T0)
    done = await scheduler.backfill(app, store, "job", times, now=T0, queue=False)
    assert (done.created, len(done.executions)) == (4, 4)


# --- failure streaks ---------------------------------------------------------------------------------


async def test_failure_streak_alerts_once_then_recovery(database_url: str, store: store_mod.Store) -> None:
    app = cron_app(database_url, "* * * * * *", alert_after_failures=2)
    app.alerts(alerts.webhook(url_env="HOOK"), group_wait=timedelta(0), window=timedelta(0))
    sched = scheduler.Scheduler(app, store)
    await start(sched)
    for i in range(1, 5):  # four fires in a row go dead
        await sched.tick(T0 + timedelta(seconds=i))
        await finish_all(store, "dead")
    await sched.tick(T0 + timedelta(seconds=5))  # settles the fourth; fires the fifth
    assert (await store.schedule_info(["job"]))["job"].failures == 4
    await finish_all(store, "succeeded")
    await sched.tick(T0 + timedelta(seconds=6))
    assert (await store.schedule_info(["job"]))["job"].failures == 0
    await store.close_alerts(T0 + timedelta(seconds=7), ["webhook"])
    kinds = sorted((a.kind, a.total) for a in await store.list_alerts())
    assert kinds == [("schedule_failing", 1), ("schedule_recovered", 1)]
    failing = next(a for a in await store.list_alerts() if a.kind == "schedule_failing")
    assert failing.samples and failing.samples[0]["failures"] == 2
    assert failing.samples[0]["error"] == "RuntimeError: boom"


# --- the real loop, with a worker ----------------------------------------------------------------------


async def test_the_running_scheduler_fires_every_second_into_the_worker(database_url: str) -> None:
    """Real time: a per-second schedule in ``run``'s roles; each second runs once, promptly."""
    from solo_os.observability import metrics

    ran: list[tuple[datetime, datetime, str]] = []
    app = App(service="cron-live")
    lag = ("solo_os_cron_lag_seconds_count", {"schedule": "tick"})
    lag_before = metrics.registry.get_sample_value(*lag) or 0

    @app.cron("* * * * * *", name="tick", retry=Retry(max_attempts=1))
    async def tick(ctx: Context) -> None:
        assert ctx.scheduled_at is not None and ctx.event is None
        ran.append((ctx.scheduled_at, datetime.now(UTC), ctx.correlation_id))

    async with helpers.running(app, database_url, roles=("worker", "scheduler")):
        began = time.monotonic()
        await helpers.eventually(lambda: _at_least(ran, 4), timeout=15)
        elapsed = time.monotonic() - began
    stamps = sorted(s for s, _, _ in ran)
    assert len(stamps) == len(set(stamps))
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(stamps))
    assert all(c == f"cron:tick:{s.isoformat().replace('+00:00', 'Z')}" for s, _, c in ran)
    delays = [(started - s).total_seconds() for s, started, _ in ran]
    assert max(delays) < 0.75, delays  # notified, not polled
    assert elapsed < 10
    lag_after = metrics.registry.get_sample_value(*lag)
    assert lag_after is not None and lag_after - lag_before >= 4  # cron lag is measured per fire


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


def _docs_app(tmp_path: Path) -> App:
    text = (Path(__file__).resolve().parents[2] / "docs" / "scheduling.md").read_text()
    block = re.search(r"<!-- docs-test: app -->\s*```python\n(.*?)```", text, re.S)
    assert block
    (tmp_path / "scheduling_app.py").write_text(block.group(1))
    return _loader.load_app(str(tmp_path / "scheduling_app.py"))


async def test_the_scheduling_docs_example_runs(database_url: str, tmp_path: Path) -> None:
    app = _docs_app(tmp_path)
    assert set(app.schedules) == {"daily-reconciliation", "poll-exports"}
    async with helpers.running(app, database_url, roles=("worker",)) as h:
        sched = scheduler.Scheduler(app, h.store)
        await sched.tick(T0)
        await sched.tick(T0 + timedelta(seconds=31))  # two fires of poll-exports: one runs, one queues
        rows = await h.store.list_fires("poll-exports", limit=0)
        assert [f.status for f in rows] == ["fired", "queued"]
        xid = await scheduler.trigger(app, h.store, "daily-reconciliation", datetime.now(UTC))

        async def done() -> bool:
            x = await h.store.get_execution(xid)
            return x is not None and x.status == "succeeded"

        await helpers.eventually(done)
