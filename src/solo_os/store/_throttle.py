"""The admin sign-in throttle, shared by every process: failures per client in a window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from solo_os.store import _db, _schema

th = _schema.signin_throttle


class ThrottleQueries:
    """Counting failed sign-ins (``ThrottlePort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def signin_failures(self, client: str, now: datetime, window: float) -> int:
        """Failed sign-ins of ``client`` in its current window (0 once the window has passed)."""
        q = sa.select(th.c.failures, th.c.window_start).where(th.c.client == client)
        async with self._db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None or row.window_start <= now - timedelta(seconds=window):
            return 0
        return int(row.failures)

    async def signin_failed(self, client: str, now: datetime, window: float) -> int:
        """Count a failed sign-in of ``client``; returns the failures in its window.

        One atomic upsert, so concurrent failures in several processes are all counted; a
        window that has passed starts again at one. Rows of clients idle for a window are
        deleted on the way.
        """
        expired = now - timedelta(seconds=window)
        stmt = self._db.insert(th).values(client=client, failures=1, window_start=now, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["client"],
            set_={
                "failures": sa.case((th.c.window_start <= expired, 1), else_=th.c.failures + 1),
                "window_start": sa.case((th.c.window_start <= expired, now), else_=th.c.window_start),
                "updated_at": now,
            },
        ).returning(th.c.failures)
        async with self._db.write() as conn:
            failures = int((await conn.execute(stmt)).scalar_one())
            await conn.execute(sa.delete(th).where(th.c.updated_at <= expired))
        return failures

    async def signin_succeeded(self, client: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(sa.delete(th).where(th.c.client == client))
