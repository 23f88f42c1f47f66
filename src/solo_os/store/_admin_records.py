"""The records the admin API's and dashboard's queries return (``_admin``, ``_stats``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from solo_os.core import records

Cursor = tuple[datetime, UUID]
ExecutionOrder = Literal["created", "updated"]
ExecutionKind = Literal["webhook", "cron"]

@dataclass(frozen=True)
class ListedExecution(records.Execution):
    """An execution in a list, with the run time of its recorded attempts."""

    duration_ms: float | None = None


@dataclass(frozen=True)
class Search:
    """A search term and how far back its payload text match reaches.

    ``text`` is compared for equality with ids, idempotency keys and correlation ids (all
    indexed) and matched as a substring of the payload's JSON text. That match uses the
    trigram index on PostgreSQL (``indexed``); without one (SQLite, or PostgreSQL without
    ``pg_trgm``, or a term under 3 characters) it scans at most ``SEARCH_SCAN`` of the newest
    events in the filters' time range: ``payload_since`` is the oldest one it reaches (None:
    the whole range is within the bound).
    """

    text: str
    uuid: UUID | None = None
    indexed: bool = False
    payload_since: datetime | None = None


@dataclass(frozen=True)
class Step:
    name: str
    result: Any
    attempt: int  # the attempt that ran it
    created_at: datetime


@dataclass(frozen=True)
class Failure:
    """A failed attempt, with what the dashboard shows beside it."""

    execution_id: UUID
    attempt: int
    handler: str
    status: str  # the execution's status now (it may have been retried since)
    outcome: str
    error_type: str | None
    error_message: str | None
    ended_at: datetime
    event_id: UUID | None
    source: str | None
    event_type: str | None


@dataclass(frozen=True)
class FireRow:
    """One fire of a schedule, with its execution's status now."""

    fire_at: datetime
    kind: str  # scheduled | catchup | manual | backfill
    status: str  # fired | skipped | queued | missed
    execution_id: UUID | None
    execution_status: str | None
    attempts: int | None
    last_error: str | None
    missed_count: int | None


@dataclass(frozen=True)
class SourceCounts:
    source: str
    events: dict[str, int]  # by event status
    executions: dict[str, int]  # by execution status
    last_received_at: datetime | None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    deliveries: int = 0
    rejected: int = 0
    succeeded: int = 0
    failed: int = 0
    latency_ms_avg: float | None = None


@dataclass(frozen=True)
class Latency:
    count: int
    avg: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class Stats:
    since: datetime
    until: datetime
    bucket_seconds: int
    deliveries: int
    accepted: int
    rejected: int
    attempts: int
    succeeded: int
    failed: int
    latency_ms: Latency
    series: list[Bucket]
