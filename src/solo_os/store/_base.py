"""The store: everything solo-os keeps, behind one async interface over SQLAlchemy Core.

``Store`` composes one query object per area, each implementing one or two ports
(``ports.py``): ``_ingest``, ``_queue``, ``_reads``, ``_dead_letters``, ``_throttle``,
``_logs``, ``_admin``, ``_stats``, ``_schedules``, ``_alerts``, ``_ratelimit``,
``_retention``; its public methods delegate to them, one line each. They share nothing by
inheritance: each reaches connections, transactions and the dialect's hooks through the
``_db.Database`` it is given. ``sqlite.py`` and
``postgres.py`` provide the ``Dialect`` hooks and what differs as whole operations (claim and
finish; PostgreSQL's single-statement hot path). Idempotency is a unique constraint and
``INSERT ... ON CONFLICT DO NOTHING``; claims are ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
and the single writer's ``BEGIN IMMEDIATE`` on SQLite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from solo_os.core import flow as flow_core
from solo_os.core import ratelimit, records
from solo_os.core.records import Alert, AlertPolicy, Delivery, Occurrence
from solo_os.store import (
    _admin,
    _alerts,
    _backlog,
    _db,
    _dead_letters,
    _flow,
    _ingest,
    _logs,
    _queue,
    _ratelimit,
    _reads,
    _retention,
    _schedules,
    _stats,
    _throttle,
    _workflow,
)
from solo_os.store._admin_records import (
    Cursor,
    ExecutionKind,
    ExecutionOrder,
    Failure,
    FireRow,
    ListedExecution,
    Search,
    SourceCounts,
    Stats,
    Step,
)
from solo_os.store._db import _translate, utcnow
from solo_os.store._logs import LineLike, LogLine
from solo_os.store._retention import DatabaseStats, PruneResult
from solo_os.store._rows import Filters, Reaped, lost_error, read_input
from solo_os.store._schedules import Advanced, Fire, FirePlan, PlannedFire, ScheduleInfo, ScheduleState


class Store:
    """Async access to everything solo-os keeps; ``SQLiteStore`` or ``PostgresStore``."""

    dialect: str = ""

    def __init__(
        self, dialect: _db.Dialect, write_engine: AsyncEngine, read_engine: AsyncEngine | None = None
    ) -> None:
        self._db = _db.Database(dialect, write_engine, read_engine)
        self._engine = self._db.engine
        self._read_engine = self._db.read_engine
        self._ingest_q = _ingest.IngestQueries(self._db)
        self._queue = _queue.QueueQueries(self._db)
        self._reads = _reads.ReadQueries(self._db)
        self._dead_letters = _dead_letters.DeadLetterQueries(self._db)
        self._throttle = _throttle.ThrottleQueries(self._db)
        self._logs = _logs.LogQueries(self._db)
        self._admin = _admin.AdminQueries(self._db)
        self._stats = _stats.StatsQueries(self._db)
        self._schedules = _schedules.ScheduleQueries(self._db)
        self._alerts = _alerts.AlertQueries(self._db)
        self._ratelimit = _ratelimit.RateLimitQueries(self._db)
        self._retention = _retention.RetentionQueries(self._db)
        self.workflow = _workflow.WorkflowQueries(self._db, self.ingest)  # ``WorkflowPort``
        self._backlog = _backlog.BacklogQueries(self._db)
        self._flow = _flow.FlowQueries(self._db)
        self._flow_plan: flow_core.Plan | None = None

    @property
    def concurrent_writers(self) -> int:
        """Writing transactions worth running at once (ingest's group-commit writers)."""
        return self._db.dialect.concurrent_writers

    @property
    def _payload_trgm(self) -> bool | None:
        """Whether search may use the payload's trigram index (None: not looked up yet)."""
        return self._admin._payload_trgm

    @_payload_trgm.setter
    def _payload_trgm(self, value: bool | None) -> None:
        self._admin._payload_trgm = value

    async def _has_payload_index(self) -> bool:
        return await self._admin._has_payload_index()

    # --- the dialect's operations (each store provides them) -----------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_seconds: float,
        *,
        lost: bool | None = None,
    ) -> list[records.Claimed]:
        """Lease up to ``limit`` due executions to ``worker_id``, oldest due first.

        ``lost`` narrows the claim: False takes only executions never lost with a process,
        True only those lost before (the worker runs such a one alone), None any. Each
        claimed execution's stored input is decoded on its own (``_rows.read_input``): one
        that cannot be read carries ``input_error`` instead of failing the claim.
        """
        raise NotImplementedError

    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        """Write attempts' outcomes; returns the results that took effect.

        A result whose lease this worker no longer holds (it expired and the execution was
        taken back) changes nothing but its attempt record.
        """
        raise NotImplementedError

    # --- plumbing ------------------------------------------------------------------------

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._db.write()

    def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._db.read()

    def _json_text(self, name: str) -> sa.ColumnElement[Any]:
        return self._db.json_text(name)

    def wake_local(self) -> None:
        self._db.wake_local()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be due, or after ``timeout`` seconds."""
        await self._db.wait_for_work(timeout)

    async def start(self) -> None:
        """Open what the store keeps open (listeners)."""

    async def close(self) -> None:
        await self._db.dispose()

    # --- ingest (IngestQueries) ------------------------------------------------

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        return await self._ingest_q.ingest(batch)

    # --- backlog (BacklogQueries): a queue consumer's backpressure --------------

    async def pending_count(self, handlers: Sequence[str], limit: int) -> int:
        return await self._backlog.pending_count(handlers, limit)

    # --- flow control (FlowQueries) --------------------------------------------

    def use_flow(self, plan: flow_core.Plan | None) -> None:
        """The app's flow-control plan: ``claim`` then also takes flow-controlled executions."""
        self._flow_plan = plan

    async def _claim_flow(
        self, worker_id: str, limit: int, now: datetime, lease_seconds: float, lost: bool | None
    ) -> list[records.Claimed]:
        if self._flow_plan is None or limit <= 0:
            return []
        return await self._flow.claim(self._flow_plan, worker_id, limit, now, lease_seconds, lost)

    async def waiting_counts(self, now: datetime) -> dict[str, int]:
        return await self._flow.waiting_counts(now)

    # --- queue (QueueQueries) --------------------------------------------------

    async def renew(
        self, worker_id: str, now: datetime, lease_seconds: float, ids: Sequence[UUID] | None = None,
    ) -> int:
        return await self._queue.renew(worker_id, now, lease_seconds, ids)

    async def release(self, worker_id: str, ids: Iterable[UUID] | None = None) -> int:
        return await self._queue.release(worker_id, ids)

    async def give_back(self, worker_id: str, ids: Iterable[UUID]) -> int:
        return await self._queue.give_back(worker_id, ids)

    async def lost_due(self, now: datetime) -> bool:
        return await self._queue.lost_due(now)

    async def reap(self, now: datetime, limit: int = 500, max_losses: int = 3) -> list[Reaped]:
        return await self._queue.reap(now, limit, max_losses)

    # --- reads (ReadQueries) ---------------------------------------------------

    async def load_steps(self, execution_id: UUID) -> dict[str, Any]:
        return await self._reads.load_steps(execution_id)

    async def save_step(self, execution_id: UUID, name: str, result_json: str, attempt: int) -> None:
        await self._reads.save_step(execution_id, name, result_json, attempt)

    async def list_events(self, f: Filters) -> list[records.Event]:
        return await self._reads.list_events(f)

    async def get_event(self, event_id: UUID) -> tuple[records.Event, bytes] | None:
        return await self._reads.get_event(event_id)

    async def list_executions(self, f: Filters, event_id: UUID | None = None) -> list[records.Execution]:
        return await self._reads.list_executions(f, event_id)

    async def get_execution(self, execution_id: UUID) -> records.Execution | None:
        return await self._reads.get_execution(execution_id)

    async def list_attempts(self, execution_id: UUID) -> list[records.Attempt]:
        return await self._reads.list_attempts(execution_id)

    async def counts(self) -> dict[str, int]:
        return await self._reads.counts()

    # --- dead letters (DeadLetterQueries) --------------------------------------

    async def matching_ids(self, f: Filters) -> list[UUID]:
        return await self._dead_letters.matching_ids(f)

    async def replay(
        self, ids: Sequence[UUID], budgets: Mapping[str, int], default_budget: int, now: datetime,
        keys: Mapping[UUID, records.FlowMark] | None = None,
    ) -> list[UUID]:
        return await self._dead_letters.replay(ids, budgets, default_budget, now, keys)

    async def cancel(self, ids: Sequence[UUID], now: datetime) -> list[UUID]:
        return await self._dead_letters.cancel(ids, now)

    async def purge(self, ids: Sequence[UUID]) -> int:
        return await self._dead_letters.purge(ids)

    # --- throttle (ThrottleQueries) --------------------------------------------

    async def signin_failures(self, client: str, now: datetime, window: float) -> int:
        return await self._throttle.signin_failures(client, now, window)

    async def signin_failed(self, client: str, now: datetime, window: float) -> int:
        return await self._throttle.signin_failed(client, now, window)

    async def signin_succeeded(self, client: str) -> None:
        await self._throttle.signin_succeeded(client)

    # --- logs (LogQueries) -----------------------------------------------------

    async def save_logs(self, execution_id: UUID, attempt: int, lines: Sequence[LineLike]) -> None:
        await self._logs.save_logs(execution_id, attempt, lines)

    async def list_logs(self, execution_id: UUID, limit: int = 5000) -> list[LogLine]:
        return await self._logs.list_logs(execution_id, limit)

    # --- admin (AdminQueries) --------------------------------------------------

    async def search(self, text: str, f: Filters) -> Search:
        return await self._admin.search(text, f)

    async def page_events(
        self, f: Filters, after: Cursor | None = None, *, search: Search | None = None,
    ) -> list[records.Event]:
        return await self._admin.page_events(f, after, search=search)

    async def page_executions(
        self, f: Filters, after: Cursor | None = None, *, order: ExecutionOrder = "created",
        event_id: UUID | None = None, kind: ExecutionKind | None = None, search: str | None = None,
    ) -> list[ListedExecution]:
        return await self._admin.page_executions(
            f, after, order=order, event_id=event_id, kind=kind, search=search
        )

    async def rerun(
        self, execution_id: UUID, max_attempts: int, now: datetime, statuses: Sequence[str] = ("succeeded",),
    ) -> UUID | None:
        return await self._admin.rerun(execution_id, max_attempts, now, statuses)

    async def resend(
        self, event_id: UUID, handlers: Sequence[tuple[str, int]], now: datetime,
        marks: Sequence[records.FlowMark | None] | None = None,
    ) -> list[UUID] | None:
        return await self._admin.resend(event_id, handlers, now, marks)

    async def cancel_pending(self, ids: Sequence[UUID], now: datetime) -> list[UUID]:
        return await self._admin.cancel_pending(ids, now)

    async def events_with_bodies(
        self, f: Filters, ids: Sequence[UUID] | None = None,
    ) -> list[tuple[records.Event, bytes]]:
        return await self._admin.events_with_bodies(f, ids)

    async def event_ids(self, f: Filters, ids: Sequence[UUID] | None = None) -> list[UUID]:
        return await self._admin.event_ids(f, ids)

    async def execution_statuses(self, ids: Sequence[UUID]) -> dict[UUID, str]:
        return await self._admin.execution_statuses(ids)

    async def list_steps(self, execution_id: UUID) -> list[Step]:
        return await self._admin.list_steps(execution_id)

    async def recent_fires(self, schedule: str, limit: int = 50) -> list[FireRow]:
        return await self._admin.recent_fires(schedule, limit)

    # --- stats (StatsQueries) --------------------------------------------------

    async def latest_failures(self, limit: int = 10) -> list[Failure]:
        return await self._stats.latest_failures(limit)

    async def source_counts(self) -> dict[str, SourceCounts]:
        return await self._stats.source_counts()

    async def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats:
        return await self._stats.stats(since, until, bucket_seconds)

    # --- schedules (ScheduleQueries) -------------------------------------------

    async def ensure_schedules(self, names: Iterable[str], now: datetime) -> None:
        await self._schedules.ensure_schedules(names, now)

    async def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        return await self._schedules.set_paused(name, paused, now)

    async def last_fires(self) -> dict[str, datetime]:
        return await self._schedules.last_fires()

    async def schedules_to_watch(self) -> set[str]:
        return await self._schedules.schedules_to_watch()

    async def advance_schedule(
        self,
        name: str,
        now: datetime,
        plan: Callable[[ScheduleState], FirePlan],
        policy: AlertPolicy | None = None,
    ) -> Advanced | None:
        return await self._schedules.advance_schedule(name, now, plan, policy)

    async def add_fires(
        self, name: str, fires: Sequence[PlannedFire], max_attempts: int, now: datetime,
        flow: records.FlowMark | None = None,
    ) -> tuple[list[PlannedFire], list[UUID]]:
        return await self._schedules.add_fires(name, fires, max_attempts, now, flow)

    async def schedule_info(self, names: Sequence[str]) -> dict[str, ScheduleInfo]:
        return await self._schedules.schedule_info(names)

    async def list_fires(
        self, name: str | None = None, limit: int = 100, *, since: datetime | None = None,
    ) -> list[Fire]:
        return await self._schedules.list_fires(name, limit, since=since)

    async def prune_fires(self, before: datetime) -> int:
        return await self._schedules.prune_fires(before)

    # --- alerts (AlertQueries) -------------------------------------------------

    async def record_occurrences(
        self, occurrences: Sequence[Occurrence], now: datetime, policy: AlertPolicy,
    ) -> int:
        return await self._alerts.record_occurrences(occurrences, now, policy)

    async def scan_dead(
        self, now: datetime, policy: AlertPolicy, *, lag: timedelta = timedelta(seconds=60), limit: int = 500,
    ) -> int | None:
        return await self._alerts.scan_dead(now, policy, lag=lag, limit=limit)

    async def close_alerts(self, now: datetime, channels: Sequence[str], limit: int = 100) -> int:
        return await self._alerts.close_alerts(now, channels, limit)

    async def claim_deliveries(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        return await self._alerts.claim_deliveries(now, limit, lease)

    async def finish_delivery(
        self,
        alert_id: UUID,
        channel: str,
        attempt: int,
        now: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        await self._alerts.finish_delivery(alert_id, channel, attempt, now, error=error, retry_at=retry_at)

    async def outbox_counts(self) -> dict[str, int]:
        return await self._alerts.outbox_counts()

    async def list_alerts(self, limit: int = 50) -> list[Alert]:
        return await self._alerts.list_alerts(limit)

    async def prune_alerts(self, before: datetime) -> int:
        return await self._alerts.prune_alerts(before)

    # --- ratelimit (RateLimitQueries) ------------------------------------------

    async def take_tokens(self, key: str, want: int, rate: float, capacity: float) -> ratelimit.Grant:
        return await self._ratelimit.take_tokens(key, want, rate, capacity)

    async def pause_key(self, key: str, seconds: float, capacity: float) -> datetime:
        return await self._ratelimit.pause_key(key, seconds, capacity)

    async def rate_limit_state(self, key: str) -> ratelimit.Bucket | None:
        return await self._ratelimit.rate_limit_state(key)

    async def reschedule(
        self, worker_id: str, execution_id: UUID, attempt: int, run_after: datetime, reason: str,
    ) -> bool:
        return await self._ratelimit.reschedule(worker_id, execution_id, attempt, run_after, reason)

    # --- retention (RetentionQueries) ------------------------------------------

    async def prune(
        self,
        older_than: timedelta,
        *,
        include_dead: bool = False,
        dry_run: bool = False,
        now: datetime | None = None,
        batch_size: int = _retention.BATCH_SIZE,
    ) -> PruneResult:
        return await self._retention.prune(
            older_than, include_dead=include_dead, dry_run=dry_run, now=now, batch_size=batch_size
        )

    async def prune_exclusive(
        self, older_than: timedelta, *, include_dead: bool = False,
    ) -> PruneResult | None:
        return await self._retention.prune_exclusive(older_than, include_dead=include_dead)

    async def table_stats(self) -> DatabaseStats:
        return await self._retention.table_stats()

    # --- schema --------------------------------------------------------------------------

    @staticmethod
    def _alembic_config() -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("solo_os.store") / "migrations")
        )
        return cfg

    async def migrate(self) -> str:
        """Bring the schema to the newest revision; returns it."""
        from alembic import command

        cfg = self._alembic_config()

        def upgrade(sync_conn: sa.Connection) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self._db.write() as conn:
            await self._db.dialect.lock_for_migration(conn)
            await conn.run_sync(upgrade)
        return self.head_revision()

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        return head or ""

    async def current_revision(self) -> str | None:
        async with self._db.read() as conn:
            exists = await conn.run_sync(
                lambda c: sa.inspect(c).has_table("alembic_version")
            )
            if not exists:
                return None
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()

    async def ping(self) -> None:
        async with self._db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))


__all__ = ["Filters", "Reaped", "Store", "_translate", "lost_error", "read_input", "utcnow"]
