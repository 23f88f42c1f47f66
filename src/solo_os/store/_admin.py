"""The admin API's queries: search, keyset pages, and the few changes it makes.

Part of ``Store`` (``AdminPort``; the overview's counts and stats are in ``_stats``). Every
query works the same on SQLite and PostgreSQL. Pages are keyset ("cursor") pages over
``(time, id)``, newest first, so a page costs the same however deep it is and rows inserted
meanwhile neither repeat nor get skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa

from solo_os.core import ids as _ids
from solo_os.core import records
from solo_os.store import _db, _flow, _schema, _workflow
from solo_os.store._admin_records import Bucket as Bucket
from solo_os.store._admin_records import Cursor as Cursor
from solo_os.store._admin_records import ExecutionKind as ExecutionKind
from solo_os.store._admin_records import ExecutionOrder as ExecutionOrder
from solo_os.store._admin_records import Failure as Failure
from solo_os.store._admin_records import FireRow as FireRow
from solo_os.store._admin_records import Latency as Latency
from solo_os.store._admin_records import ListedExecution as ListedExecution
from solo_os.store._admin_records import Search as Search
from solo_os.store._admin_records import SourceCounts as SourceCounts
from solo_os.store._admin_records import Stats as Stats
from solo_os.store._admin_records import Step as Step
from solo_os.store._db import utcnow
from solo_os.store._rows import Filters, filtered
from solo_os.store._stats import duration_ms, round3

ev = _schema.events
ex = _schema.executions
bi = _schema.batch_items
at = _schema.attempts
st = _schema.steps
sf = _schema.schedule_fires

SEARCH_SCAN = 20_000  # events a payload text search scans without an index (newest first)
TRGM_INDEX = "ix_events_payload_trgm"

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
    *_flow.FLOW_COLUMNS,
)


class AdminQueries:
    """What the admin API reads and the few changes it makes (``AdminPort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db
    _payload_trgm: bool | None = None

    # --- search ------------------------------------------------------------------------

    async def _has_payload_index(self) -> bool:
        if self._payload_trgm is None:
            self._payload_trgm = await self._db.dialect.has_payload_index(self._db.read)
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
        async with self._db.read() as conn:
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
        async with self._db.read() as conn:
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
            sa.select(sa.func.sum(duration_ms(self._db.dialect, at.c.started_at, at.c.ended_at)))
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
        q = filtered(q, f)
        if after is not None:
            q = q.where(_before(time_col, ex.c.id, after))
        q = q.limit(f.limit)
        async with self._db.read() as conn:
            rows = await _flow.annotate(conn, [_mapping(r) for r in await conn.execute(q)], utcnow())
        return [ListedExecution.from_row({**r, "duration_ms": round3(r["duration_ms"])}) for r in rows]

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
            ex.c.flow_key,  # flow control: the same keys and limits as the original
            ex.c.throttle_key,
            ex.c.priority,
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
            "flow_key",
            "throttle_key",
            "priority",
        ]
        async with self._db.write() as conn:
            res = await conn.execute(sa.insert(ex).from_select(columns, copy))
            if not res.rowcount:
                return None
            # A Batch execution: its events move to the new one (an event is in one batch at a
            # time; the finished original never reads them again).
            await conn.execute(
                sa.update(bi).where(bi.c.execution_id == execution_id).values(execution_id=new_id)
            )
            await self._db.notify(conn)
        self._db.wake_local()
        return new_id

    async def resend(
        self, event_id: UUID, handlers: Sequence[tuple[str, int]], now: datetime,
        marks: Sequence[records.FlowMark | None] | None = None,
    ) -> list[UUID] | None:
        """New pending executions of an accepted event, one per ``(handler, max_attempts)``,
        with the flow keys and priority of ``marks`` (one per handler; a ``Batch`` handler's
        execution runs a batch of this one event: ``runtime.attempt.argument``).

        The event's earlier executions stay (history). None if there is no accepted event.
        """
        marks = list(marks) if marks is not None else [None] * len(handlers)
        async with self._db.write() as conn:
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
                    "flow_key": m.flow_key if m else None,
                    "throttle_key": m.throttle_key if m else None,
                    "priority": (m.priority or None) if m else None,
                }
                for (name, budget), m in zip(handlers, marks, strict=True)
            ]
            if new:
                await conn.execute(sa.insert(ex), new)
                await self._db.notify(conn)
        if new:
            self._db.wake_local()
        return [n["id"] for n in new]

    async def cancel_pending(self, ids: Sequence[UUID], now: datetime) -> list[UUID]:
        """Cancel the executions among ``ids`` that are pending (not yet claimed) or waiting
        (a durable workflow's pause) now; a cancelled child's parent resumes (``ctx.invoke``)."""
        out: list[UUID] = []
        async with self._db.write() as conn:
            for i in range(0, len(ids), 500):
                chunk = list(ids[i : i + 500])
                rows = await conn.execute(
                    sa.update(ex)
                    .where(ex.c.id.in_(chunk), ex.c.status.in_(("pending", "waiting")))
                    .values(status="cancelled", updated_at=now)
                    .returning(ex.c.id)
                )
                out.extend(r[0] for r in rows)
            await _workflow.resume_parents(self._db, conn, out, now)
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
        async with self._db.read() as conn:
            return [(records.Event.from_row(_mapping(r)), r.body) for r in await conn.execute(q)]

    async def event_ids(self, f: Filters, ids: Sequence[UUID] | None = None) -> list[UUID]:
        """Ids of the events matching ``f`` (and among ``ids``, if given), oldest first."""
        q = sa.select(ev.c.id).order_by(ev.c.received_at, ev.c.id)
        q = _event_filters(q, f)
        if ids is not None:
            q = q.where(ev.c.id.in_(list(ids)))
        if f.limit:
            q = q.limit(f.limit)
        async with self._db.read() as conn:
            return [r[0] for r in await conn.execute(q)]

    async def execution_statuses(self, ids: Sequence[UUID]) -> dict[UUID, str]:
        """The status of each of ``ids`` that exists."""
        if not ids:
            return {}
        found: dict[UUID, str] = {}
        async with self._db.read() as conn:
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
        async with self._db.read() as conn:
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
        async with self._db.read() as conn:
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
