"""Reading events, executions, attempts and durable steps (CLI listings, the testing kit).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from solo_os.core import records
from solo_os.store import _db, _flow, _schema
from solo_os.store._db import utcnow
from solo_os.store._rows import EVENT_LIST_COLUMNS, EXECUTION_COLUMNS, Filters, filtered

ev = _schema.events
ex = _schema.executions
at = _schema.attempts
st = _schema.steps


class ReadQueries:
    """Events, executions, attempts and steps (``ReadPort``, ``StepPort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def load_steps(self, execution_id: UUID) -> dict[str, Any]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(st.c.name, st.c.result).where(st.c.execution_id == execution_id)
            )
            return {r.name: r.result for r in rows}

    async def save_step(
        self, execution_id: UUID, name: str, result_json: str, attempt: int
    ) -> None:
        """Record a step's result; the first record wins (a lost attempt may race a new one)."""
        stmt = self._db.insert(st).values(result=self._db.json_text("p_result"))
        async with self._db.write() as conn:
            await conn.execute(
                stmt.on_conflict_do_nothing(index_elements=["execution_id", "name"]),
                {"execution_id": execution_id, "name": name, "p_result": result_json,
                 "attempt": attempt, "created_at": utcnow()},
            )

    # --- reading ---------------------------------------------------------------------------

    async def list_events(self, f: Filters) -> list[records.Event]:
        q = sa.select(*EVENT_LIST_COLUMNS).order_by(ev.c.received_at.desc(), ev.c.id.desc())
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
        if f.limit:
            q = q.limit(f.limit)
        async with self._db.read() as conn:
            return [records.Event.from_row(r._mapping) for r in await conn.execute(q)]

    async def get_event(self, event_id: UUID) -> tuple[records.Event, bytes] | None:
        q = sa.select(ev).where(ev.c.id == event_id)
        async with self._db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        return records.Event.from_row(row._mapping), row.body

    async def list_executions(
        self, f: Filters, event_id: UUID | None = None
    ) -> list[records.Execution]:
        """Newest first; ``since``/``until`` apply to the last change (``updated_at``)."""
        q = sa.select(*EXECUTION_COLUMNS).order_by(ex.c.created_at.desc(), ex.c.id.desc())
        if event_id is not None:
            q = q.where(ex.c.event_id == event_id)
        q = filtered(q, f)
        if f.limit:
            q = q.limit(f.limit)
        async with self._db.read() as conn:
            rows = await _flow.annotate(conn, [r._mapping for r in await conn.execute(q)], utcnow())
        return [records.Execution.from_row(r) for r in rows]

    async def get_execution(self, execution_id: UUID) -> records.Execution | None:
        q = sa.select(*EXECUTION_COLUMNS).where(ex.c.id == execution_id)
        async with self._db.read() as conn:
            rows = await _flow.annotate(conn, [r._mapping for r in await conn.execute(q)], utcnow())
        return records.Execution.from_row(rows[0]) if rows else None

    async def list_attempts(self, execution_id: UUID) -> list[records.Attempt]:
        q = sa.select(at).where(at.c.execution_id == execution_id).order_by(at.c.attempt)
        async with self._db.read() as conn:
            return [records.Attempt.from_row(r._mapping) for r in await conn.execute(q)]

    async def counts(self) -> dict[str, int]:
        """Executions by status (queue depth for metrics and the dashboard)."""
        q = sa.select(ex.c.status, sa.func.count()).group_by(ex.c.status)
        async with self._db.read() as conn:
            found = {row[0]: int(row[1]) for row in await conn.execute(q)}
        return {s: found.get(s, 0) for s in records.EXECUTION_STATUSES}
