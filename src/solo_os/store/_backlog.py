"""The backlog a queue consumer looks at before it pulls more (backpressure, ``ConsumePort``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from solo_os.store import _db, _schema

ex = _schema.executions


class BacklogQueries:
    """How many executions of some handlers wait to run (``ConsumePort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def pending_count(self, handlers: Sequence[str], limit: int) -> int:
        """Pending executions of ``handlers``, counted up to ``limit`` (no more rows are read:
        the consumer only needs to know whether the bound is passed)."""
        if not handlers:
            return 0
        inner = (
            sa.select(sa.literal(1).label("one"))
            .select_from(ex)
            .where(ex.c.status == "pending", ex.c.handler.in_(list(handlers)))
            .limit(max(1, limit))
            .subquery()
        )
        async with self._db.read() as conn:
            found = await conn.scalar(sa.select(sa.func.count()).select_from(inner))
        return int(found or 0)
