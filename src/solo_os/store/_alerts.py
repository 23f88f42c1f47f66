"""The alert outbox (``AlertPort``).

An occurrence (one dead execution, one missed window, one failure streak, ...) is a row with a
unique ``source``, so recording it twice counts it once. Occurrences fold into the open alert of
their key (``alerts.open_key`` is unique while an alert is open); an alert closes at
``not_before`` (a short gathering wait after its first occurrence, and at most one alert per key
per window), gets one delivery row per channel, and deliveries are claimed with
``FOR UPDATE SKIP LOCKED`` under a lease and retried with backoff until sent: a channel that is
down loses nothing, and one process sends a given delivery at a time.

Dead executions become occurrences by a scan (``scan_dead``) over the executions table rather
than from an in-process hook, so a worker that dies right after committing an execution's death
cannot lose its alert.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import ids as _ids
from solo_os.core.records import Alert as Alert  # the outbox's records live in core
from solo_os.core.records import AlertPolicy as AlertPolicy
from solo_os.core.records import Delivery as Delivery
from solo_os.core.records import Occurrence as Occurrence
from solo_os.store import _db, _schema

al = _schema.alerts
ao = _schema.alert_occurrences
ad = _schema.alert_deliveries
ast = _schema.alert_state
ex = _schema.executions

_DEAD_SCAN = "dead-executions"
_MAX_SAMPLES = 5


class AlertQueries:
    """Occurrences, alerts and their deliveries."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    # --- alerts: recording ----------------------------------------------------------------

    async def record_occurrences(
        self, occurrences: Sequence[Occurrence], now: datetime, policy: AlertPolicy
    ) -> int:
        """Record occurrences (each ``source`` once); returns how many were new."""
        if not occurrences:
            return 0
        async with self._db.write() as conn:
            return await record(self._db, conn, occurrences, now, policy)

    async def scan_dead(
        self,
        now: datetime,
        policy: AlertPolicy,
        *,
        lag: timedelta = timedelta(seconds=60),
        limit: int = 500,
    ) -> int | None:
        """Turn executions of event handlers that went dead into occurrences.

        One scanner at a time (the cursor row is locked with SKIP LOCKED; None when another
        process holds it). The scan re-reads the last ``lag`` of dead executions so a
        transaction that committed late is not missed; occurrences' unique sources make the
        re-read harmless. A schedule's dead fires alert through its failure streak instead.
        Nothing to read costs one read, no write.
        """
        async with self._db.read() as conn:
            seen = (await conn.execute(sa.select(ast).where(ast.c.name == _DEAD_SCAN))).first()
            if seen is not None:
                since = _dead_since(_aware(seen.cursor_at) or now - lag, seen.cursor_id)
                if (await conn.execute(sa.select(ex.c.id).where(since).limit(1))).first() is None:
                    return 0
        async with self._db.write() as conn:
            await conn.execute(
                self._db.insert(ast).on_conflict_do_nothing(index_elements=["name"]),
                [{"name": _DEAD_SCAN, "cursor_at": now - lag, "cursor_id": None, "updated_at": now}],
            )
            cursor = (
                await conn.execute(
                    sa.select(ast).where(ast.c.name == _DEAD_SCAN).with_for_update(skip_locked=True)
                )
            ).first()
            if cursor is None:
                return None
            q = _dead_after(_aware(cursor.cursor_at) or now - lag, cursor.cursor_id, limit)
            rows = (await conn.execute(q)).all()
            occurrences = [_dead_occurrence(r) for r in rows]
            new = await record(self._db, conn, occurrences, now, policy) if occurrences else 0
            if len(rows) == limit:  # more to read: continue after the last row
                cursor_at, cursor_id = rows[-1].updated_at, rows[-1].id
            else:  # read to the end: next time, re-read the last ``lag``
                cursor_at, cursor_id = now - lag, None
            await conn.execute(
                sa.update(ast)
                .where(ast.c.name == _DEAD_SCAN)
                .values(cursor_at=cursor_at, cursor_id=cursor_id, updated_at=now)
            )
        return new

    # --- alerts: delivery -----------------------------------------------------------------

    async def close_alerts(self, now: datetime, channels: Sequence[str], limit: int = 100) -> int:
        """Close open alerts whose gathering time is over; one delivery per channel each."""
        ready = sa.and_(al.c.open_key.is_not(None), al.c.not_before <= now)
        if not await self._any(al, ready):
            return 0
        async with self._db.write() as conn:
            due = (
                await conn.execute(
                    sa.select(al.c.id)
                    .where(al.c.open_key.is_not(None), al.c.not_before <= now)
                    .order_by(al.c.not_before)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for (alert_id,) in due:
                samples = (
                    await conn.execute(
                        sa.select(ao.c.at, ao.c.details)
                        .where(ao.c.alert_id == alert_id)
                        .order_by(ao.c.at.desc(), ao.c.id.desc())
                        .limit(_MAX_SAMPLES)
                    )
                ).all()
                await conn.execute(
                    sa.update(al)
                    .where(al.c.id == alert_id)
                    .values(
                        open_key=None,
                        closed_at=now,
                        samples=[{**(s.details or {}), "at": s.at.isoformat()} for s in samples],
                    )
                )
                if channels:
                    await conn.execute(
                        self._db.insert(ad).on_conflict_do_nothing(index_elements=["alert_id", "channel"]),
                        [
                            {"alert_id": alert_id, "channel": c, "status": "pending", "attempts": 0,
                             "next_attempt_at": now, "lease_expires_at": None, "last_error": None,
                             "sent_at": None, "created_at": now, "updated_at": now}
                            for c in channels
                        ],
                    )
        return len(due)

    async def claim_deliveries(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[Delivery]:
        """Lease due deliveries (pending and due, or sending with an expired lease)."""
        due = sa.or_(
            sa.and_(ad.c.status == "pending", ad.c.next_attempt_at <= now),
            sa.and_(ad.c.status == "sending", ad.c.lease_expires_at < now),
        )
        if not await self._any(ad, due):
            return []
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    sa.select(ad.c.alert_id, ad.c.channel, ad.c.attempts, ad.c.created_at)
                    .where(due)
                    .order_by(ad.c.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            await conn.execute(
                sa.update(ad)
                .where(ad.c.alert_id == sa.bindparam("b_alert"), ad.c.channel == sa.bindparam("b_channel"))
                .values(
                    status="sending",
                    attempts=ad.c.attempts + 1,
                    lease_expires_at=now + lease,
                    updated_at=now,
                ),
                [{"b_alert": r.alert_id, "b_channel": r.channel} for r in rows],
            )
            ids = {r.alert_id for r in rows}
            alerts = {a.id: a for a in await self._alerts(conn, sa.select(al).where(al.c.id.in_(ids)))}
        return [
            Delivery(alert=alerts[r.alert_id], channel=r.channel, attempt=r.attempts + 1,
                     created_at=r.created_at)
            for r in rows
            if r.alert_id in alerts
        ]

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
        """Record a delivery's outcome: sent (no error), retry at ``retry_at``, or failed."""
        if error is None:
            values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
        elif retry_at is not None:
            values = {"status": "pending", "next_attempt_at": retry_at, "last_error": error[:2000]}
        else:
            values = {"status": "failed", "last_error": error[:2000]}
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(ad)
                .where(
                    ad.c.alert_id == alert_id,
                    ad.c.channel == channel,
                    ad.c.attempts == attempt,
                    ad.c.status == "sending",
                )
                .values(lease_expires_at=None, updated_at=now, **values)
            )

    async def _any(self, table: sa.Table, condition: sa.ColumnElement[bool]) -> bool:
        """Whether a row matches (a read, so an idle pass does not take the write lock)."""
        async with self._db.read() as conn:
            q = sa.select(sa.literal(1)).select_from(table).where(condition).limit(1)
            return (await conn.execute(q)).first() is not None

    async def outbox_counts(self) -> dict[str, int]:
        """Alert deliveries not sent yet: ``pending`` (waiting or retrying), ``sending``."""
        q = (
            sa.select(ad.c.status, sa.func.count())
            .where(ad.c.status.in_(("pending", "sending")))
            .group_by(ad.c.status)
        )
        async with self._db.read() as conn:
            found = {row[0]: int(row[1]) for row in await conn.execute(q)}
        return {s: found.get(s, 0) for s in ("pending", "sending")}

    async def list_alerts(self, limit: int = 50) -> list[Alert]:
        """Newest first, with each channel's delivery status."""
        q = sa.select(al).order_by(al.c.created_at.desc(), al.c.id.desc())
        if limit:
            q = q.limit(limit)
        async with self._db.read() as conn:
            found = await self._alerts(conn, q)
            if not found:
                return []
            rows = await conn.execute(
                sa.select(ad.c.alert_id, ad.c.channel, ad.c.status).where(
                    ad.c.alert_id.in_([a.id for a in found])
                )
            )
            statuses: dict[UUID, dict[str, str]] = {}
            for r in rows:
                statuses.setdefault(r.alert_id, {})[r.channel] = r.status
        return [dataclasses.replace(a, deliveries=statuses.get(a.id, {})) for a in found]

    async def _alerts(self, conn: AsyncConnection, q: Any) -> list[Alert]:
        return [
            Alert(
                id=r.id, key=r.key, kind=r.kind, subject=r.subject, total=int(r.total),
                first_at=r.first_at, last_at=r.last_at, not_before=r.not_before,
                closed_at=r.closed_at, samples=r.samples,
            )
            for r in await conn.execute(q)
        ]

    async def prune_alerts(self, before: datetime) -> int:
        """Delete occurrences older than ``before`` and finished alerts closed before it."""
        unfinished = sa.exists().where(ad.c.alert_id == al.c.id, ad.c.status.in_(("pending", "sending")))
        async with self._db.write() as conn:
            n = (await conn.execute(sa.delete(ao).where(ao.c.at < before))).rowcount or 0
            n += (
                await conn.execute(
                    sa.delete(al).where(
                        al.c.closed_at.is_not(None), al.c.closed_at < before, sa.not_(unfinished)
                    )
                )
            ).rowcount or 0
        return int(n)


async def record(
    db: _db.Database,
    conn: AsyncConnection,
    occurrences: Sequence[Occurrence],
    now: datetime,
    policy: AlertPolicy,
) -> int:
    """Record ``occurrences`` in ``conn``'s transaction, folded into their keys' open alerts.

    Returns how many were new (each ``source`` counts once). Shared by ``AlertQueries`` and
    the scheduler's ``advance_schedule``, which records in its own transaction.
    """
    rows = [
        {"source": o.source[:255], "alert_id": None, "at": o.at, "details": o.details}
        for o in occurrences
    ]
    new_sources: set[str] = set()
    for chunk in _chunks(rows, 500):
        res = await conn.execute(
            db.insert(ao)
            .on_conflict_do_nothing(index_elements=["source"])
            .returning(ao.c.source),
            chunk,
        )
        new_sources.update(r[0] for r in res)
    by_key: dict[str, list[Occurrence]] = {}
    for o in occurrences:
        if o.source[:255] in new_sources:
            by_key.setdefault(o.key, []).append(o)
            new_sources.discard(o.source[:255])  # the same source twice in one batch
    for key, found in by_key.items():
        alert_id = await _open_alert(db, conn, key, found, now, policy)
        await conn.execute(
            sa.update(ao)
            .where(ao.c.source.in_([o.source[:255] for o in found]))
            .values(alert_id=alert_id)
        )
    return sum(len(v) for v in by_key.values())

async def _open_alert(
    db: _db.Database,
    conn: AsyncConnection,
    key: str,
    found: Sequence[Occurrence],
    now: datetime,
    policy: AlertPolicy,
) -> UUID:
    """The id of ``key``'s open alert, counting ``found`` into it (created if need be)."""
    first = min(o.at for o in found)
    last = max(o.at for o in found)
    for _ in range(5):
        bumped = (
            await conn.execute(
                sa.update(al)
                .where(al.c.open_key == key)
                .values(
                    total=al.c.total + len(found),
                    last_at=sa.case(
                        (al.c.last_at < sa.bindparam("b_last", type_=_schema.UTCDateTime),
                         sa.bindparam("b_last", type_=_schema.UTCDateTime)),
                        else_=al.c.last_at,
                    ),
                )
                .returning(al.c.id),
                {"b_last": last},
            )
        ).first()
        if bumped is not None:
            return UUID(str(bumped[0]))
        previous = (
            await conn.execute(sa.select(sa.func.max(al.c.closed_at)).where(al.c.key == key))
        ).scalar()
        not_before = now + policy.group_wait
        previous = _aware(previous)
        if previous is not None:
            not_before = max(not_before, previous + policy.window)
        alert_id = _ids.uuid7()
        made = (
            await conn.execute(
                db.insert(al)
                .values(
                    id=alert_id, key=key[:255], kind=found[0].kind, subject=found[0].subject[:255],
                    open_key=key[:255], total=len(found), first_at=first, last_at=last,
                    not_before=not_before, closed_at=None, samples=None, created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["open_key"])
                .returning(al.c.id)
            )
        ).first()
        if made is not None:
            return alert_id
    raise RuntimeError(f"could not open an alert for {key!r}")  # pragma: no cover


def _dead_after(at: datetime, after_id: UUID | None, limit: int) -> Any:
    """Up to ``limit`` executions that went dead after the cursor, in cursor order."""
    return (
        sa.select(
            ex.c.id, ex.c.handler, ex.c.attempts, ex.c.last_error, ex.c.correlation_id,
            ex.c.updated_at, ex.c.event_id,
        )
        .where(_dead_since(at, after_id))
        .order_by(ex.c.updated_at, ex.c.id)
        .limit(limit)
    )


def _dead_occurrence(r: Any) -> Occurrence:
    """The occurrence of one dead execution (its source: the execution and attempt)."""
    return Occurrence(
        key=f"dead:{r.handler}",
        kind="dead",
        subject=r.handler,
        source=f"dead:{r.id}:{r.attempts}",
        at=r.updated_at,
        details={
            "execution_id": str(r.id),
            "event_id": str(r.event_id),
            "correlation_id": r.correlation_id,
            "handler": r.handler,
            "attempts": r.attempts,
            "error": (r.last_error or "")[:1000],
        },
    )


def _dead_since(at: datetime, after_id: UUID | None) -> sa.ColumnElement[bool]:
    """Executions of event handlers that went dead after the cursor ``(at, after_id)``."""
    return sa.and_(
        ex.c.status == "dead",
        ex.c.event_id.is_not(None),
        sa.or_(
            ex.c.updated_at > at,
            sa.and_(ex.c.updated_at == at, ex.c.id > (after_id or UUID(int=0))),
        ),
    )


def _aware(value: datetime | str | None) -> datetime | None:
    """An aggregate's datetime (``max()`` loses the column type on SQLite) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _schema.UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
