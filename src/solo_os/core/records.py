"""Immutable records that pass between ingress, store and worker. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal, Self, TypeVar
from uuid import UUID

EventStatus = Literal["accepted", "rejected"]
ExecutionStatus = Literal["pending", "running", "waiting", "succeeded", "dead", "cancelled", "skipped"]
AttemptOutcome = Literal[
    "succeeded", "failed", "timed_out", "lost", "interrupted", "suspended", "cancelled"
]
IngestOutcome = Literal["accepted", "duplicate", "rejected"]

EXECUTION_STATUSES: tuple[str, ...] = (
    "pending", "running", "waiting", "succeeded", "dead", "cancelled", "skipped"
)


_R = TypeVar("_R")


def _from_row(cls: type[_R], row: Mapping[Any, Any]) -> _R:
    """An instance of the dataclass ``cls`` from a row's columns of the same names."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{n: row[n] for n in names if n in row})


@dataclass(frozen=True)
class FlowMark:
    """What flow control stores with an execution (``core.flow``): its keys, evaluated once at
    ingest, and the decisions the ingest transaction takes with them."""

    flow_key: str | None = None  # claimed by the flow claim; the concurrency key, or ""
    throttle_key: str | None = None
    priority: int = 0
    rate_limit: tuple[str, int, float] | None = None  # (key, limit, period seconds)
    singleton: tuple[str, str] | None = None  # (key, mode)
    debounce: tuple[str, float, float | None] | None = None  # (key, period, timeout)
    batch: tuple[str, int, float] | None = None  # (key, max_size, timeout)
    error: str | None = None  # a key could not be evaluated: the execution is stored dead


@dataclass(frozen=True)
class NewExecution:
    id: UUID
    handler: str
    max_attempts: int
    flow: FlowMark | None = None


@dataclass(frozen=True)
class NewEvent:
    """A verified delivery, ready to be stored with the executions it starts."""

    id: UUID
    source: str
    idempotency_key: str
    type: str
    status: EventStatus
    payload: str | None  # JSON text, or None where the body is not storable as JSON
    body: bytes
    headers: dict[str, str]
    errors: list[dict[str, Any]] | None
    correlation_id: str
    received_at: datetime
    executions: tuple[NewExecution, ...] = ()
    trace_parent: str | None = None  # W3C traceparent of the ingress span, for the executions
    cancels: tuple[Any, ...] = ()  # core.workflow.CancelRule: executions this event cancels


@dataclass(frozen=True)
class IngestResult:
    outcome: IngestOutcome
    event_id: UUID
    executions: int = 0
    errors: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Event:
    id: UUID
    source: str
    idempotency_key: str
    type: str
    status: EventStatus
    correlation_id: str
    received_at: datetime
    payload: Any = None
    headers: dict[str, str] | None = None
    errors: list[dict[str, Any]] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Self:
        return _from_row(cls, row)


@dataclass(frozen=True)
class Execution:
    id: UUID
    event_id: UUID | None
    handler: str
    status: ExecutionStatus
    attempts: int
    max_attempts: int
    last_error: str | None
    correlation_id: str
    created_at: datetime
    updated_at: datetime
    run_after: datetime | None = None
    result: Any = None  # the handler's return value (JSON), once succeeded
    parent_id: UUID | None = None  # the execution that invoked this one (ctx.invoke)
    reason: str | None = None  # why a pending one waits, or why a skipped one was skipped

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Self:
        return _from_row(cls, row)


@dataclass(frozen=True)
class Attempt:
    execution_id: UUID
    attempt: int
    worker_id: str
    started_at: datetime
    ended_at: datetime
    outcome: AttemptOutcome
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Self:
        return _from_row(cls, row)


@dataclass(frozen=True)
class Claimed:
    """An execution a worker holds under lease, with what the handler needs."""

    id: UUID
    event_id: UUID | None
    handler: str
    attempt: int
    max_attempts: int
    correlation_id: str
    source: str | None
    event_type: str | None
    idempotency_key: str | None
    received_at: datetime | None
    headers: dict[str, str] | None
    document: Any  # the parsed JSON body
    scheduled_at: datetime | None = None  # the fire time of a cron execution
    trace_parent: str | None = None
    input_error: str | None = None  # the stored event could not be read back (fails this execution)
    losses: int = 0  # earlier attempts lost with their process (such an execution runs alone)
    batch: tuple[Any, ...] | None = None  # a Batch handler's documents, oldest first


@dataclass(frozen=True)
class Finished:
    """The outcome of one attempt, to be written back."""

    execution_id: UUID
    attempt: int
    started_at: datetime
    ended_at: datetime
    outcome: AttemptOutcome
    next_status: ExecutionStatus  # succeeded, pending (retry) or dead
    run_after: datetime | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    result: str | None = None  # the handler's return value as JSON text (succeeded)


@dataclass(frozen=True)
class DeadLetter:
    """What ``app.on_dead`` hooks receive when an execution goes dead."""

    execution_id: UUID
    handler: str
    event_id: UUID | None
    correlation_id: str
    attempts: int
    error_type: str | None
    error: str | None
    source: str | None = None
    event_type: str | None = None


# --- alerts (the store's outbox rows) -------------------------------------------------------


@dataclass(frozen=True)
class AlertPolicy:
    """How occurrences fold into alerts: a gathering wait, then at most one per key per window."""

    window: timedelta
    group_wait: timedelta


@dataclass(frozen=True)
class Occurrence:
    """One thing worth alerting about. ``source`` is unique: recorded twice, counted once."""

    key: str  # alerts with the same key fold together ("dead:fulfil")
    kind: str  # dead | schedule_failing | schedule_recovered | schedule_missed
    subject: str  # the handler or schedule it is about
    source: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    id: UUID
    key: str
    kind: str
    subject: str
    total: int  # occurrences folded into it
    first_at: datetime
    last_at: datetime
    not_before: datetime
    closed_at: datetime | None
    samples: list[dict[str, Any]] | None
    deliveries: dict[str, str] = field(default_factory=dict)  # channel -> status


@dataclass(frozen=True)
class Delivery:
    """One alert to send to one channel (claimed under a lease)."""

    alert: Alert
    channel: str
    attempt: int
    created_at: datetime


# --- schedules (what the scheduler's plan reads and returns) --------------------------------

FireKind = Literal["scheduled", "catchup", "manual", "backfill"]
FireStatus = Literal["fired", "skipped", "queued", "missed"]


@dataclass(frozen=True)
class Settled:
    """A fired execution of a schedule that reached a terminal state since last looked at."""

    fire_id: UUID
    fire_at: datetime
    kind: str
    execution_id: UUID | None
    status: str  # succeeded | dead | cancelled | gone (purged)
    error: str | None
    correlation_id: str | None


@dataclass(frozen=True)
class ScheduleState:
    """What ``plan`` decides from, read under the schedule's lock."""

    name: str
    paused: bool
    active_since: datetime
    last_fire: datetime | None  # the latest scheduled or caught-up fire (any status)
    active: int  # fired executions still pending or running
    queued: int  # fires waiting for the previous run (overlap="queue")
    failures: int  # consecutive dead fires
    alerted: bool  # the current failure streak has been alerted
    settled: tuple[Settled, ...] = ()


@dataclass(frozen=True)
class PlannedFire:
    fire_at: datetime
    kind: FireKind
    status: FireStatus
    missed_from: datetime | None = None  # a "missed" row stands for a run of missed fires
    missed_count: int | None = None
    alert: Occurrence | None = None  # recorded only if this fire is new


@dataclass(frozen=True)
class FirePlan:
    fires: tuple[PlannedFire, ...] = ()
    release: bool = False  # start the oldest queued fire first
    failures: int = 0
    alerted: bool = False
    occurrences: tuple[Occurrence, ...] = ()
    max_attempts: int = 1
    flow: FlowMark | None = None  # the schedule's flow keys, stored with each execution
