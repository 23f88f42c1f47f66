"""The dashboard's overview: latest failures, counts per source, delivery and latency stats.

Time arithmetic (durations, buckets) differs per dialect: it asks the dialect's
``epoch_seconds`` and ``floor`` hooks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import records
from solo_os.store import _db, _schema
from solo_os.store._admin_records import Bucket, Failure, Latency, SourceCounts, Stats

ev = _schema.events
ex = _schema.executions
at = _schema.attempts

FAILED_OUTCOMES = ("failed", "timed_out", "lost")


class StatsQueries:
    """Failures, per-source counts and stats (part of ``AdminPort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

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
            .where(at.c.outcome.in_(FAILED_OUTCOMES))
            .order_by(at.c.ended_at.desc(), at.c.id.desc())
            .limit(limit)
        )
        async with self._db.read() as conn:
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

        async with self._db.read() as conn:
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
        size = float(bucket_seconds)
        dur = duration_ms(self._db.dialect, at.c.started_at, at.c.ended_at)
        in_at = sa.and_(at.c.ended_at >= since, at.c.ended_at < until)
        ev_q, at_q = _bucket_queries(self._db.dialect, since, until, size, dur)
        totals_q = sa.select(sa.func.count(), sa.func.avg(dur), sa.func.max(dur)).where(in_at)
        n_buckets = max(1, int(-(-(until - since).total_seconds() // size)))
        series: dict[int, dict[str, Any]] = {}
        async with self._db.read() as conn:
            for b, n, rejected in await conn.execute(ev_q):
                if b is not None and 0 <= int(b) < n_buckets:
                    series.setdefault(int(b), {}).update(deliveries=int(n), rejected=int(rejected or 0))
            for b, ok, bad, avg in await conn.execute(at_q):
                if b is not None and 0 <= int(b) < n_buckets:
                    series.setdefault(int(b), {}).update(
                        succeeded=int(ok or 0),
                        failed=int(bad or 0),
                        latency_ms_avg=round3(avg),
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
                avg=round3(avg),
                max=round3(top),
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
        return round3((await conn.execute(q)).scalar())


def _bucket_queries(
    dialect: _db.Dialect, since: datetime, until: datetime, size: float, dur: Any
) -> tuple[Any, Any]:
    """Per bucket of ``size`` seconds from ``since``: deliveries, and attempts' outcomes."""
    start = _epoch_literal(since)
    ev_bucket = _bucket(dialect, ev.c.received_at, start, size).label("bucket")
    at_bucket = _bucket(dialect, at.c.ended_at, start, size).label("bucket")
    in_ev = sa.and_(ev.c.received_at >= since, ev.c.received_at < until)
    in_at = sa.and_(at.c.ended_at >= since, at.c.ended_at < until)
    failed = at.c.outcome.in_(FAILED_OUTCOMES)
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
    return ev_q, at_q


def duration_ms(dialect: _db.Dialect, start: Any, end: Any) -> Any:
    """Milliseconds from ``start`` to ``end`` (two ``UTCDateTime`` columns)."""
    return (dialect.epoch_seconds(end) - dialect.epoch_seconds(start)) * 1000.0


def _bucket(dialect: _db.Dialect, col: Any, start: Any, size: float) -> Any:
    offset = (dialect.epoch_seconds(col) - start) / sa.literal_column(repr(size))
    return dialect.floor(offset)  # offset >= 0


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


def round3(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
