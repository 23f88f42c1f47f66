"""The worker's queue on both dialects: lease renewal, release, lost executions, reaping.

Claiming and finishing differ per dialect and live in ``sqlite.py`` and ``postgres.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.store import _db, _schema, _workflow
from solo_os.store._db import chunks, utcnow
from solo_os.store._rows import Reaped, lost_error

ex = _schema.executions
at = _schema.attempts


class QueueQueries:
    """Leases of running executions (with ``claim``/``finish``, the ``QueuePort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def renew(
        self,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        ids: Sequence[UUID] | None = None,
    ) -> int:
        """Extend the lease of every execution ``worker_id`` runs, or of those of ``ids`` (what
        the worker still runs: one whose task died keeps no lease, and is taken back)."""
        expires = now + timedelta(seconds=lease_seconds)
        cond = [ex.c.worker_id == worker_id, ex.c.status == "running"]
        renewed = 0
        async with self._db.write() as conn:
            for chunk in [None] if ids is None else chunks(list(ids), 500):
                where = cond if chunk is None else [*cond, ex.c.id.in_(chunk)]
                res = await conn.execute(
                    sa.update(ex).where(*where).values(lease_expires_at=expires)
                )
                renewed += int(res.rowcount or 0)
        return renewed

    async def release(self, worker_id: str, ids: Iterable[UUID] | None = None) -> int:
        """Give back leased executions at once (graceful shutdown).

        The interrupted attempt is recorded (outcome ``interrupted``: the handler may have done
        part of its work) and its budget is given back (``max_attempts`` grows by one), so a
        deploy never pushes an execution toward the dead-letter queue.
        """
        cond = [ex.c.worker_id == worker_id, ex.c.status == "running"]
        if ids is not None:
            cond.append(ex.c.id.in_(list(ids)))
        now = utcnow()
        message = "interrupted: the worker shut down before the attempt finished"
        async with self._db.write() as conn:
            began = {
                r.id: r.started_at
                for r in await conn.execute(sa.select(ex.c.id, ex.c.started_at).where(*cond))
            }
            rows = (
                await conn.execute(
                    sa.update(ex)
                    .where(*cond)
                    .values(
                        status="pending",
                        max_attempts=ex.c.max_attempts + 1,
                        worker_id=None,
                        lease_expires_at=None,
                        started_at=None,
                        run_after=now,
                        updated_at=now,
                    )
                    .returning(ex.c.id, ex.c.attempts)
                )
            ).all()
            if rows:
                started = {r.id: r for r in rows}
                await conn.execute(
                    self._db.insert(at).on_conflict_do_nothing(
                        index_elements=["execution_id", "attempt"]
                    ),
                    [
                        {
                            "execution_id": xid,
                            "attempt": r.attempts,
                            "worker_id": worker_id,
                            "started_at": began.get(xid) or now,
                            "ended_at": now,
                            "outcome": "interrupted",
                            "error_type": "WorkerShutdown",
                            "error_message": message,
                            "traceback": None,
                        }
                        for xid, r in started.items()
                    ],
                )
                await self._db.notify(conn)
        return len(rows)

    async def give_back(self, worker_id: str, ids: Iterable[UUID]) -> int:
        """Give back executions claimed but never started (a worker's claimed-ahead ones at
        shutdown): pending again as before the claim, the attempt not counted, none recorded."""
        ids = list(ids)
        if not ids:
            return 0
        now = utcnow()
        given = 0
        async with self._db.write() as conn:
            for chunk in chunks(ids, 500):
                res = await conn.execute(
                    sa.update(ex)
                    .where(ex.c.worker_id == worker_id, ex.c.status == "running", ex.c.id.in_(chunk))
                    .values(
                        status="pending", attempts=ex.c.attempts - 1, worker_id=None,
                        lease_expires_at=None, started_at=None, updated_at=now,
                    )
                )
                given += int(res.rowcount or 0)
            if given:
                await self._db.notify(conn)
        return given

    async def lost_due(self, now: datetime) -> bool:
        """Whether an execution lost before (``losses > 0``) is due: it waits to run alone
        (a flow-controlled one too: the flow claim leases it alone, within its limits)."""
        q = (
            sa.select(ex.c.id)
            .where(ex.c.status == "pending", ex.c.run_after <= now, ex.c.losses > 0)
            .limit(1)
            # The small partial index of lost executions, not a scan of the pending backlog
            # (SQLite without statistics would pick the status index).
            .with_hint(ex, "INDEXED BY ix_executions_lost", "sqlite")
        )
        async with self._db.read() as conn:
            return (await conn.execute(q)).first() is not None

    async def reap(self, now: datetime, limit: int = 500, max_losses: int = 3) -> list[Reaped]:
        """Take back executions whose lease expired (their process died): the attempt is lost.

        A lost attempt is recorded (outcome ``lost``) but does not spend the execution's budget
        (``max_attempts`` grows by one, as for an interrupted attempt): the execution did
        nothing wrong that we know of, and the next claim runs it alone (``claim(lost=True)``)
        so its neighbours are not lost with it again. One lost ``max_losses`` times is dead:
        it takes its process down with it (a poison).
        """
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        ex.c.id, ex.c.attempts, ex.c.max_attempts, ex.c.worker_id, ex.c.started_at,
                        ex.c.handler, ex.c.event_id, ex.c.correlation_id, ex.c.losses,
                    )
                    .where(ex.c.status == "running", ex.c.lease_expires_at < now)
                    .order_by(ex.c.lease_expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            reaped = [
                Reaped(
                    r.id, r.attempts, "dead" if r.losses + 1 >= max_losses else "pending",
                    r.worker_id or "", r.handler, r.event_id, r.correlation_id, r.losses + 1,
                )
                for r in rows
            ]
            await _take_back(conn, reaped, now)
            # A child (ctx.invoke) lost for good: its parent resumes, and gets InvokeError.
            await _workflow.resume_parents(
                self._db, conn, [x.execution_id for x in reaped if x.status == "dead"], now
            )
            await self._record_lost(conn, rows, reaped, now)
            await self._db.notify(conn)
        self._db.wake_local()
        return reaped

    async def _record_lost(
        self, conn: AsyncConnection, rows: Sequence[Any], reaped: Sequence[Reaped], now: datetime
    ) -> None:
        """One ``lost`` attempt record per reaped execution (a repeat changes nothing)."""
        await conn.execute(
            self._db.insert(at).on_conflict_do_nothing(index_elements=["execution_id", "attempt"]),
            [
                {
                    "execution_id": r.id,
                    "attempt": r.attempts,
                    "worker_id": r.worker_id or "",
                    "started_at": r.started_at or now,
                    "ended_at": now,
                    "outcome": "lost",
                    "error_type": "LeaseExpired",
                    "error_message": _reap_error(x),
                    "traceback": None,
                }
                for r, x in zip(rows, reaped, strict=True)
            ],
        )


LEASE_EXPIRED = "lease expired: the worker running this attempt was lost"


def _reap_error(x: Reaped) -> str:
    return lost_error(x.losses) if x.status == "dead" else LEASE_EXPIRED


async def _take_back(conn: AsyncConnection, reaped: Sequence[Reaped], now: datetime) -> None:
    """Reaped executions back to pending (or dead), their lost attempt not counted."""
    await conn.execute(
        sa.update(ex)
        .where(
            ex.c.id == sa.bindparam("b_id"),
            ex.c.status == "running",
            ex.c.attempts == sa.bindparam("b_attempt"),
        )
        .values(
            status=sa.bindparam("b_status"),
            max_attempts=ex.c.max_attempts + 1,
            losses=ex.c.losses + 1,
            worker_id=None,
            lease_expires_at=None,
            started_at=None,
            run_after=now,
            last_error=sa.bindparam("b_error", type_=sa.Text),
            updated_at=now,
        ),
        [
            {"b_id": x.execution_id, "b_attempt": x.attempt, "b_status": x.status, "b_error": _reap_error(x)}
            for x in reaped
        ],
    )
