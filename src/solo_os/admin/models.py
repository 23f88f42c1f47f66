"""The admin API's request and response bodies (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

EventStatus = Literal["accepted", "rejected"]
ExecutionStatus = Literal["pending", "running", "waiting", "succeeded", "dead", "cancelled", "skipped"]
Window = Literal["1h", "6h", "24h", "7d", "30d"]
ExecutionKind = Literal["webhook", "cron"]

MAX_PAGE = 500
MAX_BULK = 100_000


def _storable(value: str) -> str:
    # The pattern keeps control characters out; this keeps out what no database text holds.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_storable),
]
ErrorText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_storable),
]


SearchText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_storable),
]


class ErrorOut(BaseModel):
    error: str = Field(description="a stable code: unauthorized, not_found, conflict, ...")
    message: str = ""


class SessionOut(BaseModel):
    method: Literal["bearer", "session"]
    csrf_token: str | None = Field(None, description="send as X-CSRF-Token with every POST")
    expires_at: datetime | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class EventOut(BaseModel):
    id: UUID
    source: str
    type: str
    idempotency_key: str
    status: EventStatus
    correlation_id: str
    received_at: datetime


class EventPage(Page[EventOut]):
    search_indexed: bool | None = Field(
        None, description="q's payload text match used the trigram index (PostgreSQL with pg_trgm)"
    )
    payload_searched_since: datetime | None = Field(
        None,
        description=(
            "without an index, q's payload text match scans a bounded number of the newest events: "
            "events received before this time were matched by id, key and correlation id only "
            "(set until= to search further back); null: the whole range was scanned"
        ),
    )


class ExecutionOut(BaseModel):
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
    reason: str | None = Field(
        None,
        description=(
            "pending: why it has not started (concurrency, throttle, debounce, batch, run_after; "
            "null when due and free to start); skipped: why (rate_limited, debounced, singleton)"
        ),
    )
    kind: ExecutionKind = Field("webhook", description="webhook: runs for an event; cron: a schedule's")
    duration_ms: float | None = Field(None, description="run time of its recorded attempts, summed")
    result: Any = Field(None, description="the handler's return value (JSON), once succeeded")
    parent_id: UUID | None = Field(None, description="the execution that invoked this one")


class EventDetail(EventOut):
    headers: dict[str, str] = Field(description="as received, without signatures or credentials")
    payload: Any = Field(None, description="the parsed JSON body (null if it was not JSON)")
    body: str = Field(description="the raw body, as text or base64 (see body_encoding)")
    body_encoding: Literal["utf-8", "base64"]
    errors: list[dict[str, Any]] | None = Field(None, description="why it was rejected")
    executions: list[ExecutionOut]


class AttemptOut(BaseModel):
    attempt: int
    worker_id: str
    started_at: datetime
    ended_at: datetime
    duration_ms: float
    outcome: Literal[
        "succeeded", "failed", "timed_out", "lost", "interrupted", "suspended", "cancelled"
    ]
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None


class StepOut(BaseModel):
    name: str
    attempt: int
    result: Any = None
    created_at: datetime


class LogLineOut(BaseModel):
    attempt: int
    seq: int = Field(description="the line's place within its attempt")
    at: datetime
    level: Literal["debug", "info", "warning", "error", "critical"]
    message: str
    fields: dict[str, Any] | None = Field(None, description="the line's key-value pairs, redacted")


class TimelineEntryOut(BaseModel):
    """A step, sleep, wait, send or invoke of the execution, in the order reached."""

    kind: Literal["step", "sleep", "wait", "send", "invoke"]
    name: str
    status: Literal["done", "waiting", "timed_out"] = Field(description="waiting: what it waits for now")
    at: datetime = Field(description="when it was first reached")
    ended_at: datetime | None = None
    until: datetime | None = Field(None, description="a sleep's end, a wait's or invoke's timeout")
    waits_for: dict[str, Any] | None = Field(
        None, description="a wait's source, type and match; an invoke's child"
    )
    event_id: UUID | None = Field(None, description="the event a wait received or a send stored")
    child_id: UUID | None = Field(None, description="an invoke's child execution")
    result: Any = None


class ExecutionDetail(ExecutionOut):
    event: EventOut | None
    attempt_history: list[AttemptOut]
    steps: list[StepOut]
    timeline: list[TimelineEntryOut] = Field(description="each step, sleep, wait, send, invoke")
    children: list[UUID] = Field(description="executions this one invoked (ctx.invoke)")
    logs: list[LogLineOut] = Field(description="what ctx.log emitted, per attempt (bounded, redacted)")


class ExecutionFilter(BaseModel):
    """Which executions a bulk action takes (all given filters must match): dead ones for a
    replay or purge, pending ones for a cancel."""

    model_config = ConfigDict(extra="forbid")

    ids: list[UUID] | None = Field(None, max_length=10_000, description="only these executions")
    source: Name | None = None
    type: Name | None = None
    handler: Name | None = None
    error: ErrorText | None = Field(None, description="text the last error contains")
    since: datetime | None = Field(None, description="last changed (died) at or after")
    until: datetime | None = Field(None, description="last changed (died) before")
    limit: int = Field(0, ge=0, le=MAX_BULK, description="at most this many, oldest first (0: all)")
    dry_run: bool = Field(False, description="only count and list what the action would take")


class ReplayOut(BaseModel):
    dry_run: bool
    matched: int = Field(description="dead executions that match")
    replayed: int = Field(description="put back to pending (0 in a dry run)")
    ids: list[UUID] = Field(description="the matched (dry run) or replayed ids, at most 1000")
    truncated: bool = False


class ActionOut(BaseModel):
    """The result of a cancel or purge."""

    dry_run: bool
    matched: int = Field(description="executions in a state the action takes that match")
    changed: int = Field(description="cancelled or purged (0 in a dry run)")
    ids: list[UUID] = Field(description="the matched (dry run) or changed ids, at most 1000")
    truncated: bool = False


class StartedOut(BaseModel):
    """New executions a re-run or resend created (the earlier ones and their history stay)."""

    execution_ids: list[UUID]


class RevalidateFilter(BaseModel):
    """Which rejected events a bulk revalidation takes."""

    model_config = ConfigDict(extra="forbid")

    ids: list[UUID] | None = Field(None, max_length=10_000)
    source: Name | None = None
    type: Name | None = None
    since: datetime | None = Field(None, description="received at or after")
    until: datetime | None = Field(None, description="received before")
    limit: int = Field(1000, ge=1, le=10_000, description="at most this many, oldest first")
    dry_run: bool = False


class RevalidateOne(BaseModel):
    dry_run: bool = False


class RevalidatedOut(BaseModel):
    event_id: UUID
    outcome: Literal["accepted", "rejected", "skipped"]
    executions: int = 0
    errors: list[dict[str, Any]] | None = None
    reason: str | None = Field(None, description="why it was skipped")


class RevalidateOut(BaseModel):
    dry_run: bool
    matched: int
    accepted: int
    rejected: int
    skipped: int
    results: list[RevalidatedOut]


class SourceOut(BaseModel):
    name: str
    kind: str | None = Field(description="the provider (null: no longer declared by the app)")
    declared: bool
    verify: bool | None
    handlers: list[str]
    events: dict[str, int]
    executions: dict[str, int]
    last_received_at: datetime | None


class FailureOut(BaseModel):
    execution_id: UUID
    attempt: int
    handler: str
    status: ExecutionStatus
    outcome: Literal["failed", "timed_out", "lost"]
    error_type: str | None
    error_message: str | None
    ended_at: datetime
    event_id: UUID | None
    source: str | None
    event_type: str | None


class LatencyOut(BaseModel):
    count: int
    avg: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


class BucketOut(BaseModel):
    start: datetime
    deliveries: int
    rejected: int
    succeeded: int
    failed: int
    latency_ms_avg: float | None


class StatsOut(BaseModel):
    window: Window
    since: datetime
    until: datetime
    bucket_seconds: int
    deliveries: int = Field(description="events stored (accepted + rejected)")
    accepted: int
    rejected: int
    attempts: int = Field(description="attempts that ended in the window")
    succeeded: int
    failed: int = Field(description="attempts that failed, timed out or were lost")
    latency_ms: LatencyOut = Field(description="attempt run time, start to end")
    queue: dict[str, int] = Field(description="executions by status now")
    series: list[BucketOut]


class ScheduleOut(BaseModel):
    name: str
    expression: str
    timezone: str
    overlap: str = Field(description="skip, allow or queue: what a fire does while one runs")
    catchup: str = Field(description="none, latest or all: missed fires run after downtime")
    paused: bool
    paused_at: datetime | None
    next_fire: datetime | None = Field(description="the next fire time (null while paused)")
    last_fire_at: datetime | None
    last_kind: str | None
    last_result: str | None = Field(
        description="the last fire's execution status, or skipped / queued / missed"
    )
    last_execution_id: UUID | None
    failures: int = Field(description="fires in a row that went dead")
    queued: int


class FireOut(BaseModel):
    fire_at: datetime
    kind: str
    status: str
    execution_id: UUID | None
    execution_status: ExecutionStatus | None
    attempts: int | None
    last_error: str | None
    missed_count: int | None


class ScheduleDetail(ScheduleOut):
    fires: list[FireOut] = Field(description="the newest fires first")


class TriggeredOut(BaseModel):
    schedule: str
    execution_id: UUID


class PausedOut(BaseModel):
    schedule: str
    paused: bool
    changed: bool = Field(description="false when it already was in that state")
