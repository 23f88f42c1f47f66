"""Shared token buckets for outbound calls, and rescheduling an execution that waited for one.

Part of ``Store`` (``RateLimitPort``). Each key is one row of ``rate_limits``. A demand locks the row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's single writer already holds
``BEGIN IMMEDIATE``), runs the pure ``ratelimit.take`` on it and writes the result back, so
concurrent demands from every process serialize on that row and together never take more than
the bucket holds. On PostgreSQL the clock is the database's (the dialect's ``clock`` hook:
``clock_timestamp()``), so hosts with skewed clocks still share one timeline; SQLite lives on
one host and uses its clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import ratelimit
from solo_os.store import _db, _schema

rl = _schema.rate_limits
ex = _schema.executions


class RateLimitQueries:
    """Token buckets (``RateLimitPort``) and rate-limit rescheduling (``QueuePort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    async def take_tokens(self, key: str, want: int, rate: float, capacity: float) -> ratelimit.Grant:
        """Take up to ``want`` tokens of ``key`` (refilled at ``rate``/s up to ``capacity``)."""
        async with self._db.write() as conn:
            bucket, now = await self._locked_bucket(conn, key, capacity)
            state, grant = ratelimit.take(bucket, now, rate, capacity, want)
            await self._save_bucket(conn, key, state)
        return grant

    async def pause_key(self, key: str, seconds: float, capacity: float) -> datetime:
        """Grant nothing for ``key`` for ``seconds`` from now, for every process; returns until when."""
        async with self._db.write() as conn:
            bucket, now = await self._locked_bucket(conn, key, capacity)
            state = ratelimit.pause(bucket, now, seconds)
            await self._save_bucket(conn, key, state)
        return state.paused_until or now

    async def rate_limit_state(self, key: str) -> ratelimit.Bucket | None:
        """The stored bucket of ``key`` (None before its first use)."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(rl.c.tokens, rl.c.updated_at, rl.c.paused_until).where(rl.c.key == key)
                )
            ).first()
        if row is None:
            return None
        return ratelimit.Bucket(row.tokens, row.updated_at, row.paused_until)

    async def reschedule(
        self, worker_id: str, execution_id: UUID, attempt: int, run_after: datetime, reason: str
    ) -> bool:
        """Put a running execution back to ``pending`` until ``run_after``, giving its attempt back.

        For an attempt that did no work of its own (it waited for a rate limit): the attempt
        number is reused by the next claim and no attempt row is written. Returns False when
        this worker no longer holds the execution's lease (nothing changes then).
        """
        now = datetime.now(UTC)
        async with self._db.write() as conn:
            res = await conn.execute(
                sa.update(ex)
                .where(
                    ex.c.id == execution_id,
                    ex.c.worker_id == worker_id,
                    ex.c.attempts == attempt,
                    ex.c.status == "running",
                )
                .values(
                    status="pending",
                    attempts=ex.c.attempts - 1,
                    run_after=max(run_after, now),
                    last_error=reason[:4000],
                    worker_id=None,
                    lease_expires_at=None,
                    started_at=None,
                    updated_at=now,
                )
                .returning(ex.c.id)
            )
            return res.first() is not None

    # --- plumbing ------------------------------------------------------------------------

    async def _locked_bucket(
        self, conn: AsyncConnection, key: str, capacity: float
    ) -> tuple[ratelimit.Bucket, datetime]:
        """The bucket of ``key`` locked for this transaction (created full if new), and now."""
        for _ in range(2):
            row = (await conn.execute(self._select_locked(key))).first()
            if row is not None:
                now = row.now if self._db.dialect.clock() is not None else datetime.now(UTC)
                return ratelimit.Bucket(row.tokens, row.updated_at, row.paused_until), now
            # First use of the key: create it full. A concurrent creator wins the conflict;
            # the second SELECT then waits for its commit and reads its row.
            created = datetime.now(UTC)
            await conn.execute(
                self._db.insert(rl)
                .values(key=key, tokens=float(capacity), updated_at=self._now_expr(created))
                .on_conflict_do_nothing(index_elements=["key"])
            )
        raise RuntimeError(f"rate limit row {key!r} vanished while locked")  # pragma: no cover

    def _select_locked(self, key: str) -> Any:
        cols: list[Any] = [rl.c.tokens, rl.c.updated_at, rl.c.paused_until]
        clock = self._db.dialect.clock()
        if clock is not None:
            cols.append(clock.label("now"))
        return sa.select(*cols).where(rl.c.key == key).with_for_update()

    def _now_expr(self, fallback: datetime) -> Any:
        clock = self._db.dialect.clock()
        return fallback if clock is None else clock

    @staticmethod
    async def _save_bucket(conn: AsyncConnection, key: str, state: ratelimit.Bucket) -> None:
        await conn.execute(
            sa.update(rl)
            .where(rl.c.key == key)
            .values(tokens=state.tokens, updated_at=state.updated_at, paused_until=state.paused_until)
        )
