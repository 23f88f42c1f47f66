"""Read queries of the admin API and dashboard: keyset pages, counts per source, stats.

A mixin of ``Store``: every query here reads through ``self._read()`` and works the same on
SQLite and PostgreSQL. Pages are keyset ("cursor") pages over ``(time, id)``, newest first,
so a page costs the same however deep it is and rows inserted meanwhile neither repeat nor
get skipped. Time arithmetic (durations, buckets) differs per dialect and lives in
``_epoch_seconds``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import ids as _ids
from solo_os.core import records
from solo_os.store import _logs, _schema

if TYPE_CHECKING:
    from solo_os.store._base import Filters

ev = _schema.events
ex = _schema.executions
at = _schema.attempts
st = _schema.steps
sf = _schema.schedule_fires

Cursor = tuple[datetime, UUID]
ExecutionOrder = Literal["created", "updated"]
ExecutionKind = Literal["webhook", "cron"]
SEARCH_SCAN = 20_000  # events a payload text search scans without an index (newest first)
TRGM_INDEX = "ix_events_payload_trgm"
_FAILED_OUTCOMES = ("failed", "timed_out", "lost")

_EVENT_COLUMNS = (
    ev.c.id,
    ev.c.source,
    ev.c.idempotency_key,
    ev.c.type,
    ev.c.status,
    ev.c.correlation_id,
    ev.c.received_at,
)
_EXECUTION_COLUMNS = (
    ex.c.id,
    ex.c.event_id,
    ex.c.handler,
    ex.c.status,
    ex.c.attempts,
    ex.c.max_attempts,
    ex.c.last_error,
    ex.c.correlation_id,
    ex.c.created_at,
    ex.c.updated_at,
    ex.c.run_after,
)


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


class AdminQueries(_logs.LogQueries):
    """What the admin API reads and the few changes it makes. Mixed into ``Store``."""

    dialect: str
    _payload_trgm: bool | None = None

    if TYPE_CHECKING:

        def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...

        def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...

        def _insert(self, table: sa.Table) -> Any: ...

        def _filtered(self, q: Any, f: Filters) -> Any: ...

        async def _notify(self, conn: AsyncConnection) -> None: ...

        def wake_local(self) -> None: ...

    # --- search ------------------------------------------------------------------------

    async def _has_payload_index(self) -> bool:
        if self.dialect != "postgresql":
            return False
        if self._payload_trgm is None:
            async with self._read() as conn:
                found = await conn.scalar(sa.text(f"SELECT to_regclass('{TRGM_INDEX}') IS NOT NULL"))
            self._payload_trgm = bool(found)
        return self._payload_trgm

    async def search(self, text: str, f: Filters) -> Search:
        """How a search for ``text`` among the events ``f`` selects will run (see ``Search``)."""
        try:
            as_uuid: UUID | None = UUID(text)
        except ValueError:
            as_uuid = None
        if len(text) >= 3 and await self._has_payload_index():
            return Search(text, as_uuid, indexed=True)
        q = sa.select(ev.c.received_at).order_by(ev.c.received_at.desc()).offset(SEARCH_SCAN - 1).limit(1)
        async with self._read() as conn:
            floor = await conn.scalar(_event_filters(q, f))
        return Search(text, as_uuid, payload_since=floor)

    # --- pages -------------------------------------------------------------------------

    async def page_events(
        self, f: Filters, after: Cursor | None = None, *, search: Search | None = None
    ) -> list[records.Event]:
        """Up to ``f.limit`` events older than ``after`` (newest first) matching ``f``."""
        q = sa.select(*_EVENT_COLUMNS).order_by(ev.c.received_at.desc(), ev.c.id.desc())
        q = _event_filters(q, f)
        if search is not None:
            q = q.where(_event_match(search))
        if after is not None:
            q = q.where(_before(ev.c.received_at, ev.c.id, after))
        q = q.limit(f.limit)
        async with self._read() as conn:
            return [records.Event.from_row(_mapping(r)) for r in await conn.execute(q)]

    async def page_executions(
        self,
        f: Filters,
        after: Cursor | None = None,
        *,
        order: ExecutionOrder = "created",
        event_id: UUID | None = None,
        kind: ExecutionKind | None = None,
        search: str | None = None,
    ) -> list[ListedExecution]:
        """Up to ``f.limit`` executions past ``after``, newest first by ``order``'s time.

        ``kind`` keeps webhook runs (an event's) or cron runs (none); ``search`` is compared
        with the execution's id, its event's id and idempotency key, and its correlation id.
        """
        time_col = ex.c.created_at if order == "created" else ex.c.updated_at
        duration = (
            sa.select(sa.func.sum(self._duration_ms(at.c.started_at, at.c.ended_at)))
            .where(at.c.execution_id == ex.c.id)
            .scalar_subquery()
            .label("duration_ms")
        )
        q = sa.select(*_EXECUTION_COLUMNS, duration).order_by(time_col.desc(), ex.c.id.desc())
        if event_id is not None:
            q = q.where(ex.c.event_id == event_id)
        if kind is not None:
            q = q.where(ex.c.event_id.is_not(None) if kind == "webhook" else ex.c.event_id.is_(None))
        if search is not None:
            q = q.where(_execution_match(search))
        q = self._filtered(q, f)
        if after is not None:
            q = q.where(_before(time_col, ex.c.id, after))
        q = q.limit(f.limit)
        async with self._read() as conn:
            rows = [_mapping(r) for r in await conn.execute(q)]
        return [ListedExecution.from_row({**r, "duration_ms": _round(r["duration_ms"])}) for r in rows]

    # --- actions (the admin API's and the CLI's) ---------------------------------------

    async def rerun(
        self, execution_id: UUID, max_attempts: int, now: datetime, statuses: Sequence[str] = ("succeeded",)
    ) -> UUID | None:
        """A new pending execution of the same handler for the same event (or schedule time).

        Only from an execution in ``statuses``; the original and its history stay as they
        are. Returns the new execution's id, or None if the execution is not (or no longer)
        in one of those states.
        """
        new_id = _ids.uuid7()
        copy = sa.select(
            sa.literal(new_id, sa.Uuid).label("id"),
            ex.c.event_id,
            ex.c.handler,
            sa.literal("pending").label("status"),
            sa.literal(0).label("attempts"),
            sa.literal(max_attempts).label("max_attempts"),
            sa.literal(now, _schema.UTCDateTime).label("run_after"),
            ex.c.correlation_id,
            ex.c.scheduled_at,
            sa.literal(now, _schema.UTCDateTime).label("created_at"),
            sa.literal(now, _schema.UTCDateTime).label("updated_at"),
        ).where(ex.c.id == execution_id, ex.c.status.in_(list(statuses)))
        columns = [
            "id",
            "event_id",
            "handler",
            "status",
            "attempts",
            "max_attempts",
            "run_after",
            "correlation_id",
            "scheduled_at",
            "created_at",
            "updated_at",
        ]
        async with self._write() as conn:
            res = await conn.execute(sa.insert(ex).from_select(columns, copy))
            if not res.rowcount:
                return None
            await self._notify(conn)
        self.wake_local()
        return new_id

    async def resend(
        self, event_id: UUID, handlers: Sequence[tuple[str, int]], now: datetime
    ) -> list[UUID] | None:
        """New pending executions of an accepted event, one per ``(handler, max_attempts)``.

        The event's earlier executions stay (history). None if there is no accepted event.
        """
        async with self._write() as conn:
            row = (
                await conn.execute(sa.select(ev.c.status, ev.c.correlation_id).where(ev.c.id == event_id))
            ).first()
            if row is None or row.status != "accepted":
                return None
            new = [
                {
                    "id": _ids.uuid7(),
                    "event_id": event_id,
                    "handler": name,
                    "status": "pending",
                    "attempts": 0,
                    "max_attempts": budget,
                    "run_after": now,
                    "correlation_id": row.correlation_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for name, budget in handlers
            ]
            if new:
                await conn.execute(sa.insert(ex), new)
                await self._notify(conn)
        if new:
            self.wake_local()
        return [n["id"] for n in new]

    async def cancel_pending(self, ids: Sequence[UUID], now: datetime) -> list[UUID]:
        """Cancel the executions among ``ids`` that are pending (not yet claimed) now."""
        out: list[UUID] = []
        async with self._write() as conn:
            for i in range(0, len(ids), 500):
                chunk = list(ids[i : i + 500])
                rows = await conn.execute(
                    sa.update(ex)
                    .where(ex.c.id.in_(chunk), ex.c.status == "pending")
                    .values(status="cancelled", updated_at=now)
                    .returning(ex.c.id)
                )
                out.extend(r[0] for r in rows)
        return out

    async def events_with_bodies(
        self, f: Filters, ids: Sequence[UUID] | None = None
    ) -> list[tuple[records.Event, bytes]]:
        """Whole events (headers and raw body) matching ``f``, oldest first (revalidation)."""
        q = sa.select(ev).order_by(ev.c.received_at, ev.c.id)
        q = _event_filters(q, f)
        if ids is not None:
            q = q.where(ev.c.id.in_(list(ids)))
        if f.limit:
            q = q.limit(f.limit)
        async with self._read() as conn:
            return [(records.Event.from_row(_mapping(r)), r.body) for r in await conn.execute(q)]

    async def event_ids(self, f: Filters, ids: Sequence[UUID] | None = None) -> list[UUID]:
        """Ids of the events matching ``f`` (and among ``ids``, if given), oldest first."""
        q = sa.select(ev.c.id).order_by(ev.c.received_at, ev.c.id)
        q = _event_filters(q, f)
        if ids is not None:
            q = q.where(ev.c.id.in_(list(ids)))
        if f.limit:
            q = q.limit(f.limit)
        async with self._read() as conn:
            return [r[0] for r in await conn.execute(q)]

    async def execution_statuses(self, ids: Sequence[UUID]) -> dict[UUID, str]:
        """The status of each of ``ids`` that exists."""
        if not ids:
            return {}
        found: dict[UUID, str] = {}
        async with self._read() as conn:
            for i in range(0, len(ids), 500):
                chunk = list(ids[i : i + 500])
                rows = await conn.execute(sa.select(ex.c.id, ex.c.status).where(ex.c.id.in_(chunk)))
                found.update({r.id: r.status for r in rows})
        return found

    async def list_steps(self, execution_id: UUID) -> list[Step]:
        """The durable steps an execution completed, in the order they completed."""
        q = (
            sa.select(st.c.name, st.c.result, st.c.attempt, st.c.created_at)
            .where(st.c.execution_id == execution_id)
            .order_by(st.c.created_at, st.c.name)
        )
        async with self._read() as conn:
            return [Step(r.name, r.result, r.attempt, r.created_at) for r in await conn.execute(q)]

    async def recent_fires(self, schedule: str, limit: int = 50) -> list[FireRow]:
        """The newest fires of ``schedule`` first, each with its execution's current state."""
        q = (
            sa.select(
                sf.c.fire_at,
                sf.c.kind,
                sf.c.status,
                sf.c.execution_id,
                sf.c.missed_count,
                ex.c.status.label("x_status"),
                ex.c.attempts,
                ex.c.last_error,
            )
            .select_from(sf.outerjoin(ex, ex.c.id == sf.c.execution_id))
            .where(sf.c.schedule == schedule)
            .order_by(sf.c.fire_at.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(q)).all()
        return [
            FireRow(
                fire_at=r.fire_at,
                kind=r.kind,
                status=r.status,
                execution_id=r.execution_id,
                execution_status=r.x_status,
                attempts=r.attempts,
                last_error=r.last_error,
                missed_count=r.missed_count,
            )
            for r in rows
        ]

    # --- overview -------------------------------------------------------------------------

    async def latest_failures(self, limit: int = 10) -> list[Failure]:
        """The newest failed attempts (failed, timed out or lost), newest first."""
        q = (
            sa.select(
                at.c.execution_id,
                at.c.attempt,
                at.c.outcome,
                at.c.error_type,
                at.c.error_message,
                at.c.ended_at,
                ex.c.handler,
                ex.c.status,
                ex.c.event_id,
                ev.c.source,
                ev.c.type,
            )
            .select_from(at.join(ex, ex.c.id == at.c.execution_id).outerjoin(ev, ev.c.id == ex.c.event_id))
            .where(at.c.outcome.in_(_FAILED_OUTCOMES))
            .order_by(at.c.ended_at.desc(), at.c.id.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(q)).all()
        return [
            Failure(
                execution_id=r.execution_id,
                attempt=r.attempt,
                handler=r.handler,
                status=r.status,
                outcome=r.outcome,
                error_type=r.error_type,
                error_message=r.error_message,
                ended_at=r.ended_at,
                event_id=r.event_id,
                source=r.source,
                event_type=r.type,
            )
            for r in rows
        ]

    async def source_counts(self) -> dict[str, SourceCounts]:
        """Per stored source: events by status, executions by status, the last delivery."""
        events_q = sa.select(
            ev.c.source, ev.c.status, sa.func.count(), sa.func.max(ev.c.received_at)
        ).group_by(ev.c.source, ev.c.status)
        executions_q = (
            sa.select(ev.c.source, ex.c.status, sa.func.count())
            .select_from(ex.join(ev, ev.c.id == ex.c.event_id))
            .group_by(ev.c.source, ex.c.status)
        )
        by_source: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return by_source.setdefault(name, {"events": {}, "executions": {}, "last": None})

        async with self._read() as conn:
            for source, status, n, last in await conn.execute(events_q):
                e = entry(source)
                e["events"][status] = int(n)
                last = _aware(last)
                if last is not None and (e["last"] is None or last > e["last"]):
                    e["last"] = last
            for source, status, n in await conn.execute(executions_q):
                entry(source)["executions"][status] = int(n)
        return {
            name: SourceCounts(
                source=name,
                events={s: v["events"].get(s, 0) for s in ("accepted", "rejected")},
                executions={s: v["executions"].get(s, 0) for s in records.EXECUTION_STATUSES},
                last_received_at=v["last"],
            )
            for name, v in sorted(by_source.items())
        }

    async def stats(self, since: datetime, until: datetime, bucket_seconds: int) -> Stats:
        """Deliveries, attempt outcomes and attempt latency in ``[since, until)``, in buckets.

        A delivery is a stored event (accepted or rejected; duplicates are not stored and are
        counted by the Prometheus metrics only). Latency is an attempt's run time, from its
        start to its end, in milliseconds.
        """
        if bucket_seconds <= 0 or until <= since:
            raise ValueError("stats need a positive bucket and since < until")
        start = _epoch_literal(since)
        size = float(bucket_seconds)
        dur = self._duration_ms(at.c.started_at, at.c.ended_at)
        ev_bucket = self._bucket(ev.c.received_at, start, size).label("bucket")
        at_bucket = self._bucket(at.c.ended_at, start, size).label("bucket")
        in_ev = sa.and_(ev.c.received_at >= since, ev.c.received_at < until)
        in_at = sa.and_(at.c.ended_at >= since, at.c.ended_at < until)
        failed = at.c.outcome.in_(_FAILED_OUTCOMES)
        ev_q = (
            sa.select(
                ev_bucket,
                sa.func.count(),
                sa.func.sum(sa.case((ev.c.status == "rejected", 1), else_=0)),
            )
            .where(in_ev)
            .group_by(sa.literal_column("bucket"))
        )
        at_q = (
            sa.select(
                at_bucket,
                sa.func.sum(sa.case((at.c.outcome == "succeeded", 1), else_=0)),
                sa.func.sum(sa.case((failed, 1), else_=0)),
                sa.func.avg(dur),
            )
            .where(in_at)
            .group_by(sa.literal_column("bucket"))
        )
        totals_q = sa.select(sa.func.count(), sa.func.avg(dur), sa.func.max(dur)).where(in_at)
        n_buckets = max(1, int(-(-(until - since).total_seconds() // size)))
        series: dict[int, dict[str, Any]] = {}
        async with self._read() as conn:
            for b, n, rejected in await conn.execute(ev_q):
                if b is not None and 0 <= int(b) < n_buckets:
                    series.setdefault(int(b), {}).update(deliveries=int(n), rejected=int(rejected or 0))
            for b, ok, bad, avg in await conn.execute(at_q):
                if b is not None and 0 <= int(b) < n_buckets:
                    series.setdefault(int(b), {}).update(
                        succeeded=int(ok or 0),
                        failed=int(bad or 0),
                        latency_ms_avg=_round(avg),
                    )
            count, avg, top = (await conn.execute(totals_q)).one()
            count = int(count or 0)
            pcts: dict[str, float | None] = {}
            for name, p in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                pcts[name] = await self._percentile(conn, dur, in_at, count, p) if count else None
        buckets = [Bucket(start=_from_epoch(since, i * size), **series.get(i, {})) for i in range(n_buckets)]
        deliveries = sum(b.deliveries for b in buckets)
        rejected = sum(b.rejected for b in buckets)
        return Stats(
            since=since,
            until=until,
            bucket_seconds=bucket_seconds,
            deliveries=deliveries,
            accepted=deliveries - rejected,
            rejected=rejected,
            attempts=count,
            succeeded=sum(b.succeeded for b in buckets),
            failed=sum(b.failed for b in buckets),
            latency_ms=Latency(
                count=count,
                avg=_round(avg),
                max=_round(top),
                p50=pcts["p50"],
                p95=pcts["p95"],
                p99=pcts["p99"],
            ),
            series=buckets,
        )

    async def _percentile(
        self, conn: AsyncConnection, dur: Any, where: Any, count: int, p: float
    ) -> float | None:
        """The exact nearest-rank percentile: one row at its offset in duration order."""
        offset = min(count - 1, max(0, int(-(-p * count // 1)) - 1))
        q = sa.select(dur.label("d")).where(where).order_by(sa.literal_column("d")).offset(offset).limit(1)
        return _round((await conn.execute(q)).scalar())

    # --- dialect-specific time arithmetic ---------------------------------------------------

    def _epoch_seconds(self, col: Any) -> Any:
        if self.dialect == "sqlite":
            # The column holds naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff". Whole seconds and
            # the fraction are read apart: julianday() keeps only milliseconds, and in floating
            # point days not even those.
            whole = sa.cast(sa.func.strftime("%s", col), sa.Integer)
            return whole + sa.cast(sa.func.substr(col, 20), sa.Float)
        return sa.extract("epoch", col)

    def _duration_ms(self, start: Any, end: Any) -> Any:
        return (self._epoch_seconds(end) - self._epoch_seconds(start)) * 1000.0

    def _bucket(self, col: Any, start: Any, size: float) -> Any:
        offset = (self._epoch_seconds(col) - start) / sa.literal_column(repr(size))
        if self.dialect == "sqlite":
            return sa.cast(offset, sa.Integer)  # truncation is floor here: offset >= 0
        return sa.func.floor(offset)


def _mapping(row: Any) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", row._mapping)


def _event_match(s: Search) -> Any:
    found = [ev.c.idempotency_key == s.text, ev.c.correlation_id == s.text]
    if s.uuid is not None:
        found.append(ev.c.id == s.uuid)
    text = sa.cast(ev.c.payload, sa.Text).icontains(s.text, autoescape=True)
    if s.payload_since is not None:
        text = sa.and_(ev.c.received_at >= s.payload_since, text)
    return sa.or_(*found, text)


def _execution_match(text: str) -> Any:
    by_key = sa.select(ev.c.id).where(ev.c.idempotency_key == text)
    found = [ex.c.correlation_id == text, ex.c.event_id.in_(by_key)]
    try:
        as_uuid = UUID(text)
    except ValueError:
        return sa.or_(*found)
    return sa.or_(*found, ex.c.id == as_uuid, ex.c.event_id == as_uuid)


def _event_filters(q: Any, f: Filters) -> Any:
    if f.status:
        q = q.where(ev.c.status == f.status)
    if f.source:
        q = q.where(ev.c.source == f.source)
    if f.type:
        q = q.where(ev.c.type == f.type)
    if f.since:
        q = q.where(ev.c.received_at >= f.since)
    if f.until:
        q = q.where(ev.c.received_at < f.until)
    return q


def _before(time_col: Any, id_col: Any, after: Cursor) -> Any:
    """Rows that come after the cursor in (time, id) descending order."""
    moment, last_id = after
    return sa.or_(time_col < moment, sa.and_(time_col == moment, id_col < last_id))


def _epoch_literal(moment: datetime) -> Any:
    # An inline number, not a bound parameter: PostgreSQL must see the SELECT's bucket
    # expression and the GROUP BY's as the same one.
    return sa.literal_column(repr(moment.timestamp()))


def _from_epoch(since: datetime, seconds: float) -> datetime:
    return since + timedelta(seconds=seconds)


def _aware(value: Any) -> datetime | None:
    """``max()`` of a ``UTCDateTime`` column, as an aware UTC datetime."""
    if isinstance(value, str):  # SQLite may hand back the stored text
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
