"""Retention on SQLite and PostgreSQL: what is pruned, what stays, batches, the daily run."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from solo_os import store as store_mod
from solo_os.cli import cli
from solo_os.core import ids as _ids
from solo_os.core import records
from solo_os.runtime import pruner as pruner_mod
from solo_os.store import _retention, _schema
from tests.apps.billing import Effects, make_app
from tests.helpers import eventually, invoice, running

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class Seeded:
    event_id: UUID
    execution_ids: list[UUID]


async def seed(
    store: store_mod.Store,
    *,
    age: timedelta,
    statuses: tuple[str, ...] = ("succeeded",),
    finished_age: timedelta | None = None,
    event_status: str = "accepted",
    key: str | None = None,
) -> Seeded:
    """One event received ``age`` ago with executions in ``statuses``, last changed
    ``finished_age`` ago (default: ``age``), each with an attempt and a step."""
    received = NOW - age
    body = json.dumps({"n": str(uuid.uuid4())}).encode()
    executions = tuple(records.NewExecution(_ids.uuid7(), f"h{i}", 3) for i in range(len(statuses)))
    event = records.NewEvent(
        id=_ids.uuid7(),
        source="billing",
        idempotency_key=key or str(uuid.uuid4()),
        type="invoice.paid",
        status=event_status,  # type: ignore[arg-type]
        payload=body.decode(),
        body=body,
        headers={},
        errors=None if event_status == "accepted" else [{"msg": "bad"}],
        correlation_id="c",
        received_at=received,
        executions=executions if event_status == "accepted" else (),
    )
    (result,) = await store.ingest([event])
    changed = NOW - (finished_age if finished_age is not None else age)
    async with store._write() as conn:
        for x, status in zip(executions, statuses, strict=True):
            await conn.execute(
                sa.update(_schema.executions)
                .where(_schema.executions.c.id == x.id)
                .values(status=status, attempts=1, updated_at=changed)
            )
            await conn.execute(
                sa.insert(_schema.attempts).values(
                    execution_id=x.id,
                    attempt=1,
                    worker_id="w",
                    started_at=changed,
                    ended_at=changed,
                    outcome="succeeded" if status == "succeeded" else "failed",
                )
            )
            await conn.execute(
                sa.insert(_schema.steps).values(
                    execution_id=x.id, name="s", result=None, attempt=1, created_at=changed
                )
            )
    return Seeded(result.event_id, [x.id for x in executions])


async def seed_cron(store: store_mod.Store, age: timedelta, status: str) -> UUID:
    """An execution with no event (a cron fire)."""
    xid = _ids.uuid7()
    async with store._write() as conn:
        await conn.execute(
            sa.insert(_schema.executions).values(
                id=xid,
                event_id=None,
                handler="nightly",
                status=status,
                attempts=1,
                max_attempts=3,
                run_after=NOW - age,
                correlation_id="c",
                created_at=NOW - age,
                updated_at=NOW - age,
            )
        )
    return xid


async def count(store: store_mod.Store, table: sa.Table, where: Any = None) -> int:
    q = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        q = q.where(where)
    async with store._read() as conn:
        return int(await conn.scalar(q) or 0)


async def exists(store: store_mod.Store, table: sa.Table, row_id: UUID) -> bool:
    return await count(store, table, table.c.id == row_id) == 1


ev, ex, at, st = _schema.events, _schema.executions, _schema.attempts, _schema.steps


async def test_the_rules_of_what_goes_and_what_stays(store: store_mod.Store) -> None:
    old_done = await seed(store, age=40 * DAY, statuses=("succeeded", "cancelled"))
    old_dead = await seed(store, age=40 * DAY, statuses=("succeeded", "dead"))
    old_pending = await seed(store, age=40 * DAY, statuses=("pending",))
    old_running = await seed(store, age=40 * DAY, statuses=("running",))
    replayed_lately = await seed(store, age=40 * DAY, finished_age=DAY)
    young = await seed(store, age=DAY)
    rejected = await seed(store, age=40 * DAY, statuses=(), event_status="rejected")
    no_handler = await seed(store, age=40 * DAY, statuses=())
    cron_done = await seed_cron(store, 40 * DAY, "succeeded")
    cron_dead = await seed_cron(store, 40 * DAY, "dead")

    dry = await store.prune(30 * DAY, now=NOW, dry_run=True)
    result = await store.prune(30 * DAY, now=NOW)
    assert (dry.executions, dry.events, dry.dry_run) == (4, 3, True)
    assert (result.executions, result.events, result.dry_run) == (4, 3, False)
    assert result.execution_cutoff == NOW - 30 * DAY == result.event_cutoff

    for gone in (old_done.event_id, rejected.event_id, no_handler.event_id):
        assert not await exists(store, ev, gone)
    for kept in (old_dead, old_pending, old_running, replayed_lately, young):
        assert await exists(store, ev, kept.event_id)
    # the succeeded execution of the dead one's event goes; the dead one and its event stay
    assert [await exists(store, ex, x) for x in old_dead.execution_ids] == [False, True]
    assert await exists(store, ex, cron_dead) and not await exists(store, ex, cron_done)
    # attempts and steps went with their executions (cascade); the survivors keep theirs
    gone_ids = old_done.execution_ids + old_dead.execution_ids[:1]
    assert await count(store, at, at.c.execution_id.in_(gone_ids)) == 0
    assert await count(store, st, st.c.execution_id.in_(gone_ids)) == 0
    assert await count(store, at, at.c.execution_id == old_dead.execution_ids[1]) == 1

    assert (await store.prune(30 * DAY, now=NOW)).executions == 0  # nothing left to do
    with_dead = await store.prune(30 * DAY, now=NOW, include_dead=True)
    assert (with_dead.executions, with_dead.events) == (2, 1)  # old_dead + cron_dead; its event
    assert not await exists(store, ev, old_dead.event_id)


async def test_idempotency_keys_stay_at_least_seven_days(store: store_mod.Store) -> None:
    six_days = await seed(store, age=6 * DAY, key="late-redelivery")
    eight_days = await seed(store, age=8 * DAY, key="very-late")
    result = await store.prune(DAY, now=NOW)
    assert result.event_cutoff == NOW - 7 * DAY
    assert (result.executions, result.events) == (2, 1)
    assert await exists(store, ev, six_days.event_id)  # its executions went, the key stays
    assert not await exists(store, ev, eight_days.event_id)
    assert await count(store, ex, ex.c.event_id == six_days.event_id) == 0


async def test_a_late_redelivery_is_still_a_duplicate_after_pruning(database_url: str) -> None:
    effects = Effects()
    app = make_app(effects)
    payload = invoice()
    async with running(app, database_url) as h:
        first = await h.post("billing", payload, key="evt-late")
        assert first.json()["status"] == "accepted"
        await eventually(lambda: _all_done(h.store))
        pruned = await h.store.prune(timedelta(0))  # executions go at once; the key stays
        assert pruned.executions == 2 and pruned.events == 0
        again = await h.post("billing", payload, key="evt-late")
        assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
        later = await h.store.prune(timedelta(0), now=datetime.now(UTC) + 8 * DAY)
        assert later.events == 1
        fresh = await h.post("billing", payload, key="evt-late")
        assert fresh.json()["status"] == "accepted"  # past the floor: a new event
        await eventually(lambda: _all_done(h.store))
    assert effects.calls[f"fulfil:{payload['id']}"] == 2


async def _all_done(store: store_mod.Store) -> bool:
    counts = await store.counts()
    return counts["succeeded"] == 2 and counts["pending"] == counts["running"] == 0


async def test_pruning_goes_in_batches(store: store_mod.Store) -> None:
    for _ in range(7):
        await seed(store, age=40 * DAY)
    result = await store.prune(30 * DAY, now=NOW, batch_size=2)
    assert (result.executions, result.events) == (7, 7)
    assert await count(store, ev) == 0


async def test_negative_age_is_refused(store: store_mod.Store) -> None:
    from solo_os import errors

    with pytest.raises(errors.ConfigError, match="cannot be negative"):
        await store.prune(-DAY)


@pytest.mark.postgres
async def test_only_one_process_prunes_at_a_time_on_postgres(pg_url: str) -> None:
    store = store_mod.connect(pg_url)
    try:
        await seed(store, age=40 * DAY)
        holder = await asyncpg.connect(pg_url)
        try:
            assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", _retention.PRUNE_LOCK)
            assert await store.prune_exclusive(timedelta(days=30)) is None
            await holder.execute("SELECT pg_advisory_unlock($1)", _retention.PRUNE_LOCK)
        finally:
            await holder.close()
        result = await store.prune_exclusive(timedelta(days=30))
        assert result is not None and result.executions == 1
        # the lock was given back: another session can take it
        other = await asyncpg.connect(pg_url)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock($1)", _retention.PRUNE_LOCK)
        finally:
            await other.close()
    finally:
        await store.close()


async def test_table_stats(store: store_mod.Store) -> None:
    await seed(store, age=DAY, statuses=("succeeded", "pending"))
    stats = await store.table_stats()
    rows = {t.name: t.rows for t in stats.tables}
    assert {"events": 1, "executions": 2, "attempts": 2, "steps": 2}.items() <= rows.items()
    assert stats.dialect == store.dialect
    assert stats.total_bytes is not None and stats.total_bytes > 0
    sizes = {t.name: t.bytes for t in stats.tables}
    assert all(isinstance(sizes[n], int) and sizes[n] > 0 for n in ("events", "executions"))


async def test_the_daily_pruner_runs_and_stops(store: store_mod.Store) -> None:
    await seed(store, age=40 * DAY)
    pruner = pruner_mod.Pruner(store, timedelta(days=30), first_delay=0.0, interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(pruner.run(stop))
    await eventually(lambda: _runs(pruner, 1))
    assert await count(store, ev) == 0
    stop.set()
    await asyncio.wait_for(task, 5)


async def _runs(pruner: pruner_mod.Pruner, n: int) -> bool:
    return pruner.runs >= n


async def test_the_worker_role_prunes_daily_unless_retention_is_off(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pruner_mod, "FIRST_RUN_DELAY", 0.0)
    app = make_app(Effects())
    async with running(app, database_url, roles=("serve",)) as h:
        await seed(h.store, age=40 * DAY)
    async with running(app, database_url, settings={"SOLO_OS_RETENTION_DAYS": 0}) as h:
        assert "solo-os-retention" not in {t.get_name() for t in h.runtime._background}
    async with running(app, database_url) as h:
        assert "solo-os-retention" in {t.get_name() for t in h.runtime._background}
        await eventually(lambda: _empty(h.store))


async def _empty(store: store_mod.Store) -> bool:
    return await count(store, ev) == 0


def test_cli_prune_and_stats(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI prunes against the real clock, so the rows are aged from today, not from NOW
    # (seeding from the fixed NOW made a day-old row older than --older-than 2d as time passed).
    shift = datetime.now(UTC) - NOW

    async def fill() -> None:
        s = store_mod.connect(database_url)
        try:
            await seed(s, age=timedelta(days=400) - shift)
            await seed(s, age=DAY - shift)
        finally:
            await s.close()

    asyncio.run(fill())
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    dry = runner.invoke(cli, ["db", "prune", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert {k: json.loads(dry.stdout)[k] for k in ("dry_run", "executions", "events")} == {
        "dry_run": True,
        "executions": 1,
        "events": 1,
    }
    human = runner.invoke(cli, ["db", "prune", "--older-than", "2d"])
    assert human.exit_code == 0, human.output
    assert "deleted 1 execution(s)" in human.stdout and "1 event(s)" in human.stdout
    stats = runner.invoke(cli, ["db", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.stdout)
    assert {t["table"]: t["rows"] for t in data["tables"]}["events"] == 1
    assert data["executions_by_status"]["succeeded"] == 1
    table = runner.invoke(cli, ["db", "stats"])
    assert table.exit_code == 0 and "events" in table.stdout

    bad = runner.invoke(cli, ["db", "prune", "--older-than", "soon"])
    assert bad.exit_code == 2 and "not like 30d" in bad.stderr
    monkeypatch.setenv("SOLO_OS_RETENTION_DAYS", "0")
    off = runner.invoke(cli, ["db", "prune"])
    assert off.exit_code == 2 and "retention off" in off.stderr
