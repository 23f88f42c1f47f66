"""An operator's changes to executions: replay dead ones, cancel, purge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from solo_os.core import records
from solo_os.store import _db, _schema
from solo_os.store._db import chunks
from solo_os.store._rows import Filters, filtered

ex = _schema.executions


class DeadLetterQueries:
    """Replay, cancel and purge (part of ``OperatorPort``), and selecting by filters."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def matching_ids(self, f: Filters) -> list[UUID]:
        """Ids of executions that match ``f`` (all of them when ``f.limit`` is 0), oldest first."""
        q = sa.select(ex.c.id).order_by(ex.c.updated_at, ex.c.id)
        q = filtered(q, f)
        if f.limit:
            q = q.limit(f.limit)
        async with self._db.read() as conn:
            return [r[0] for r in await conn.execute(q)]

    async def replay(
        self, ids: Sequence[UUID], budgets: Mapping[str, int], default_budget: int, now: datetime,
        keys: Mapping[UUID, records.FlowMark] | None = None,
    ) -> list[UUID]:
        """Put dead executions back to pending with a fresh attempt budget; history stays.

        ``budgets`` maps handler names to their ``max_attempts``; the new budget is counted on
        top of the attempts already made, so attempt numbers keep increasing. ``keys``: flow
        keys evaluated again (the execution died because its key could not be evaluated).
        """
        if not ids:
            return []
        budget = (
            sa.case(dict(budgets), value=ex.c.handler, else_=default_budget)
            if budgets
            else sa.literal(default_budget)
        )
        out: list[UUID] = []
        async with self._db.write() as conn:
            for xid, m in (keys or {}).items():
                await conn.execute(sa.update(ex).where(ex.c.id == xid, ex.c.status == "dead").values(
                    flow_key=m.flow_key, throttle_key=m.throttle_key, priority=m.priority or None
                ))
            for chunk in chunks(list(ids), 500):
                rows = await conn.execute(
                    sa.update(ex)
                    .where(ex.c.id.in_(chunk), ex.c.status == "dead")
                    .values(
                        status="pending",
                        max_attempts=ex.c.attempts + budget,
                        run_after=now,
                        updated_at=now,
                    )
                    .returning(ex.c.id)
                )
                out.extend(r[0] for r in rows)
            if out:
                await self._db.notify(conn)
        if out:
            self._db.wake_local()
        return out

    async def cancel(self, ids: Sequence[UUID], now: datetime) -> list[UUID]:
        """Cancel pending or dead executions (a running one finishes its attempt first)."""
        out: list[UUID] = []
        async with self._db.write() as conn:
            for chunk in chunks(list(ids), 500):
                rows = await conn.execute(
                    sa.update(ex)
                    .where(ex.c.id.in_(chunk), ex.c.status.in_(("pending", "dead")))
                    .values(status="cancelled", updated_at=now)
                    .returning(ex.c.id)
                )
                out.extend(r[0] for r in rows)
        return out

    async def purge(self, ids: Sequence[UUID]) -> int:
        """Delete dead or cancelled executions with their attempts and steps (events stay)."""
        deleted = 0
        async with self._db.write() as conn:
            for chunk in chunks(list(ids), 500):
                res = await conn.execute(
                    sa.delete(ex).where(ex.c.id.in_(chunk), ex.c.status.in_(("dead", "cancelled")))
                )
                deleted += int(res.rowcount or 0)
        return deleted
