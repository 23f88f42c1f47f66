"""The store's ports: small ``typing.Protocol`` interfaces, one per role that uses the store.

``Store`` (``SQLiteStore``, ``PostgresStore``) implements every port; a role takes the port
it uses rather than the whole store, so what it may touch is visible in its signature and a
test double implements a dozen methods, not sixty. The ports group existing methods and add
none: a method's meaning is documented where it is implemented.

The check at the bottom (read by mypy, never run) proves both dialect stores satisfy each
port; the ports are also ``runtime_checkable`` for ``isinstance`` checks in tests (which look
at method names only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

from solo_os.core import flow, ratelimit, records
from solo_os.store._admin import (
    Cursor,
    ExecutionKind,
    ExecutionOrder,
    FireRow,
    ListedExecution,
    Search,
    SourceCounts,
    Stats,
    Step,
)
from solo_os.store._admin import Failure as FailureRow
from solo_os.store._alerts import Alert, AlertPolicy, Delivery, Occurrence
from solo_os.store._base import Filters, Reaped
from solo_os.store._logs import LineLike, LogLine
from solo_os.store._retention import DatabaseStats, PruneResult
from solo_os.store._schedules import Advanced, Fire, FirePlan, PlannedFire, ScheduleInfo, ScheduleState
from solo_os.store._sqlite_claim import Taker
from solo_os.store._workflow import Call, Suspension


@runtime_checkable
class LifecyclePort(Protocol):
    """Opening, closing and migrating the store (the runtime and the CLI's set-up)."""

    dialect: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def migrate(self) -> str: ...
    def head_revision(self) -> str: ...
    async def current_revision(self) -> str | None: ...


@runtime_checkable
class HandOffPort(Protocol):
    """SQLite's hand-off: the worker of a process that also ingests gets due executions
    leased to it by the ingest's own transaction (``_sqlite_claim``). PostgreSQL has none."""

    def hand_off_to(self, taker: Taker | None) -> None: ...


@runtime_checkable
class IngestPort(Protocol):
    """Storing batches of deliveries with their executions, idempotently (ingress)."""

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]: ...


@runtime_checkable
class ConsumePort(IngestPort, Protocol):
    """A queue consumer: ingest, and the pending backlog of its handlers (backpressure)."""

    async def pending_count(self, handlers: Sequence[str], limit: int) -> int: ...


@runtime_checkable
class FlowPort(Protocol):
    """Flow control's claim (``_flow``): given the app's plan, ``claim`` takes flow-controlled
    executions too, within every limit."""

    def use_flow(self, plan: flow.Plan | None) -> None: ...


@runtime_checkable
class QueuePort(Protocol):
    """The worker's queue: claim, finish, lease renewal, reaping, release, rescheduling."""

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_seconds: float,
        *,
        lost: bool | None = None,
    ) -> list[records.Claimed]: ...
    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]: ...
    async def renew(
        self, worker_id: str, now: datetime, lease_seconds: float, ids: Sequence[UUID] | None = None
    ) -> int: ...
    async def release(self, worker_id: str, ids: Iterable[UUID] | None = None) -> int: ...
    async def give_back(self, worker_id: str, ids: Iterable[UUID]) -> int: ...
    async def lost_due(self, now: datetime) -> bool: ...
    async def reap(self, now: datetime, limit: int = 500, max_losses: int = 3) -> list[Reaped]: ...
    async def reschedule(
        self, worker_id: str, execution_id: UUID, attempt: int, run_after: datetime, reason: str
    ) -> bool: ...
    async def wait_for_work(self, timeout: float) -> None: ...
    def wake_local(self) -> None: ...


@runtime_checkable
class StepPort(Protocol):
    """Durable step results of an execution (``ctx.step``)."""

    async def load_steps(self, execution_id: UUID) -> dict[str, Any]: ...
    async def save_step(self, execution_id: UUID, name: str, result_json: str, attempt: int) -> None: ...


class WorkflowPort(Protocol):
    """Durable workflow calls of an execution (``ctx.sleep``, ``wait_for_event``, ``send``,
    ``invoke``; ``store/_workflow.py``), and the ingest ``ctx.send`` stores events through."""

    async def load_calls(self, execution_id: UUID) -> dict[str, Call]: ...
    async def record_call(
        self, execution_id: UUID, name: str, kind: str, now: datetime, *,
        result: Any = None, event_id: UUID | None = None,
    ) -> None: ...
    async def settle(
        self, execution_id: UUID, name: str, status: str, result: Any, now: datetime
    ) -> Call | None: ...
    async def child_state(self, child_id: UUID) -> tuple[str, Any, str | None] | None: ...
    async def suspend(self, s: Suspension, now: datetime) -> Call | None: ...
    async def wake_due(self, now: datetime, limit: int = 1000) -> int: ...
    async def next_wake(self) -> datetime | None: ...
    async def wait_for_timers(self, until: datetime | None, timeout: float) -> None: ...
    async def cancel_requested(self, execution_id: UUID) -> bool: ...
    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]: ...


@runtime_checkable
class LogPort(Protocol):
    """Execution log lines captured per attempt."""

    async def save_logs(self, execution_id: UUID, attempt: int, lines: Sequence[LineLike]) -> None: ...
    async def list_logs(self, execution_id: UUID, limit: int = 5000) -> list[LogLine]: ...


@runtime_checkable
class SchedulePort(Protocol):
    """Schedules and their fires, exactly once per (schedule, fire time) (the scheduler)."""

    async def ensure_schedules(self, names: Iterable[str], now: datetime) -> None: ...
    async def set_paused(self, name: str, paused: bool, now: datetime) -> bool: ...
    async def last_fires(self) -> dict[str, datetime]: ...
    async def schedules_to_watch(self) -> set[str]: ...
    async def advance_schedule(
        self,
        name: str,
        now: datetime,
        plan: Callable[[ScheduleState], FirePlan],
        policy: AlertPolicy | None = None,
    ) -> Advanced | None: ...
    async def add_fires(
        self, name: str, fires: Sequence[PlannedFire], max_attempts: int, now: datetime,
        flow: records.FlowMark | None = None,
    ) -> tuple[list[PlannedFire], list[UUID]]: ...
    async def schedule_info(self, names: Sequence[str]) -> dict[str, ScheduleInfo]: ...
    async def list_fires(
        self, name: str | None = None, limit: int = 100, *, since: datetime | None = None
    ) -> list[Fire]: ...
    async def prune_fires(self, before: datetime) -> int: ...


@runtime_checkable
class AlertPort(Protocol):
    """Alert occurrences, alerts and their outbox of deliveries (the alerter)."""

    async def record_occurrences(
        self, occurrences: Sequence[Occurrence], now: datetime, policy: AlertPolicy
    ) -> int: ...
    async def scan_dead(
        self, now: datetime, policy: AlertPolicy, *, lag: timedelta = ..., limit: int = 500
    ) -> int | None: ...
    async def close_alerts(self, now: datetime, channels: Sequence[str], limit: int = 100) -> int: ...
    async def claim_deliveries(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]: ...
    async def finish_delivery(
        self,
        alert_id: UUID,
        channel: str,
        attempt: int,
        now: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None: ...
    async def outbox_counts(self) -> dict[str, int]: ...
    async def list_alerts(self, limit: int = 50) -> list[Alert]: ...
    async def prune_alerts(self, before: datetime) -> int: ...


@runtime_checkable
class ReadPort(Protocol):
    """Reading events, executions and attempts (CLI listings, the testing kit)."""

    async def list_events(self, f: Filters) -> list[records.Event]: ...
    async def get_event(self, event_id: UUID) -> tuple[records.Event, bytes] | None: ...
    async def list_executions(
        self, f: Filters, event_id: UUID | None = None
    ) -> list[records.Execution]: ...
    async def get_execution(self, execution_id: UUID) -> records.Execution | None: ...
    async def list_attempts(self, execution_id: UUID) -> list[records.Attempt]: ...
    async def counts(self) -> dict[str, int]: ...
    async def matching_ids(self, f: Filters) -> list[UUID]: ...


@runtime_checkable
class OperatorPort(Protocol):
    """An operator's changes to executions: replay, cancel, purge, rerun, resend."""

    async def replay(
        self, ids: Sequence[UUID], budgets: Mapping[str, int], default_budget: int, now: datetime,
        keys: Mapping[UUID, records.FlowMark] | None = None,
    ) -> list[UUID]: ...
    async def cancel(self, ids: Sequence[UUID], now: datetime) -> list[UUID]: ...
    async def cancel_pending(self, ids: Sequence[UUID], now: datetime) -> list[UUID]: ...
    async def purge(self, ids: Sequence[UUID]) -> int: ...
    async def rerun(
        self,
        execution_id: UUID,
        max_attempts: int,
        now: datetime,
        statuses: Sequence[str] = ("succeeded",),
    ) -> UUID | None: ...
    async def resend(
        self, event_id: UUID, handlers: Sequence[tuple[str, int]], now: datetime,
        marks: Sequence[records.FlowMark | None] | None = None,
    ) -> list[UUID] | None: ...


@runtime_checkable
class AdminPort(ReadPort, OperatorPort, Protocol):
    """The admin API and dashboard: reads (keyset pages, search, stats) and operator writes."""

    async def search(self, text: str, f: Filters) -> Search: ...
    async def page_events(
        self, f: Filters, after: Cursor | None = None, *, search: Search | None = None
    ) -> list[records.Event]: ...
    async def page_executions(
        self,
        f: Filters,
        after: Cursor | None = None,
        *,
        order: ExecutionOrder = "created",
        event_id: UUID | None = None,
        kind: ExecutionKind | None = None,
        search: str | None = None,
    ) -> list[ListedExecution]: ...
    async def events_with_bodies(
        self, f: Filters, ids: Sequence[UUID] | None = None
    ) -> list[tuple[records.Event, bytes]]: ...
    async def event_ids(self, f: Filters, ids: Sequence[UUID] | None = None) -> list[UUID]: ...
    async def execution_statuses(self, ids: Sequence[UUID]) -> dict[UUID, str]: ...
    async def list_steps(self, execution_id: UUID) -> list[Step]: ...
    async def recent_fires(self, schedule: str, limit: int = 50) -> list[FireRow]: ...
    async def latest_failures(self, limit: int = 10) -> list[FailureRow]: ...
    async def source_counts(self) -> dict[str, SourceCounts]: ...
    async def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats: ...
    async def schedule_info(self, names: Sequence[str]) -> dict[str, ScheduleInfo]: ...
    async def list_logs(self, execution_id: UUID, limit: int = 5000) -> list[LogLine]: ...


@runtime_checkable
class RetentionPort(Protocol):
    """Pruning old records and table sizes (the pruner, ``solo-os db``)."""

    async def prune(
        self,
        older_than: timedelta,
        *,
        include_dead: bool = False,
        dry_run: bool = False,
        now: datetime | None = None,
        batch_size: int = 500,
    ) -> PruneResult: ...
    async def prune_exclusive(
        self, older_than: timedelta, *, include_dead: bool = False
    ) -> PruneResult | None: ...
    async def table_stats(self) -> DatabaseStats: ...


@runtime_checkable
class RateLimitPort(Protocol):
    """Shared token buckets for outbound calls (``solo_os.outbound.http``)."""

    async def take_tokens(self, key: str, want: int, rate: float, capacity: float) -> ratelimit.Grant: ...
    async def pause_key(self, key: str, seconds: float, capacity: float) -> datetime: ...
    async def rate_limit_state(self, key: str) -> ratelimit.Bucket | None: ...


@runtime_checkable
class ThrottlePort(Protocol):
    """The admin sign-in throttle, shared by every process."""

    async def signin_failures(self, client: str, now: datetime, window: float) -> int: ...
    async def signin_failed(self, client: str, now: datetime, window: float) -> int: ...
    async def signin_succeeded(self, client: str) -> None: ...


ALL_PORTS: tuple[type, ...] = (
    LifecyclePort,
    IngestPort,
    QueuePort,
    StepPort,
    LogPort,
    SchedulePort,
    AlertPort,
    ReadPort,
    OperatorPort,
    AdminPort,
    RetentionPort,
    RateLimitPort,
    ThrottlePort,
    ConsumePort,
)


if TYPE_CHECKING:  # mypy proves both dialect stores implement every port; never run
    from solo_os.store.postgres import PostgresStore
    from solo_os.store.sqlite import SQLiteStore

    def _conforms(
        s: SQLiteStore | PostgresStore,
    ) -> tuple[
        LifecyclePort, IngestPort, QueuePort, StepPort, LogPort, SchedulePort, AlertPort,
        ReadPort, OperatorPort, AdminPort, RetentionPort, RateLimitPort, ThrottlePort,
        ConsumePort,
    ]:
        return (s, s, s, s, s, s, s, s, s, s, s, s, s, s)
