"""The scale-out store: PostgreSQL through asyncpg, workers woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from solo_os.store import _base

CHANNEL = "solo_os_work"
MIGRATION_LOCK = 0x501005  # pg_advisory_xact_lock key: one migrating process at a time
log = structlog.get_logger("solo_os.store")

_FINISH = sa.text(
    """
    UPDATE executions AS e SET
        status = r.status,
        run_after = COALESCE(r.run_after, e.run_after),
        last_error = r.error,
        lease_expires_at = NULL,
        worker_id = NULL,
        started_at = NULL,
        updated_at = :now
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]),
        CAST(:run_afters AS timestamptz[]), CAST(:errors AS text[])
    ) AS r(id, attempt, status, run_after, error)
    WHERE e.id = r.id AND e.worker_id = :worker AND e.attempts = r.attempt
      AND e.status = 'running'
    RETURNING e.id
    """
)


class PostgresStore(_base.Store):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=10,
            pool_recycle=1800,
            connect_args={
                "timeout": 5,
                "command_timeout": 60,
                "server_settings": {"application_name": "solo-os"},
            },
        )
        super().__init__(engine)
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def _json_text(self, name: str) -> sa.ColumnElement[Any]:
        return sa.cast(sa.bindparam(name, type_=sa.Text), postgresql.JSONB)

    async def _notify(self, conn: AsyncConnection) -> None:
        # Delivered at commit, once per transaction and channel (PostgreSQL folds duplicates).
        await conn.execute(sa.text(f"NOTIFY {CHANNEL}"))

    async def _apply_finished(
        self,
        conn: AsyncConnection,
        worker_id: str,
        update_stmt: Any,
        params: list[dict[str, Any]],
        now: datetime,
    ) -> set[UUID]:
        # One statement over arrays: asyncpg's executemany reports no row counts, and this
        # says exactly which executions this worker still held.
        rows = await conn.execute(
            _FINISH,
            {
                "ids": [p["b_id"] for p in params],
                "attempts": [p["b_attempt"] for p in params],
                "statuses": [p["b_status"] for p in params],
                "run_afters": [p["b_run_after"] for p in params],
                "errors": [p["b_error"] for p in params],
                "worker": worker_id,
                "now": now,
            },
        )
        return {r[0] for r in rows}

    async def _lock_for_migration(self, conn: AsyncConnection) -> None:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})

    async def start(self) -> None:
        """Listen for NOTIFY on a dedicated connection; reconnects in the background."""
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._listen_forever(), name="solo-os-listen")

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("store.listen_failed", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            lost = asyncio.Event()
            self._listener = conn
            try:
                await conn.add_listener(CHANNEL, lambda *_: self.wake_local())
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                self.wake_local()  # anything committed while we were not listening
                while not lost.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5.0)
                    if not lost.is_set():
                        # A cheap round trip notices a dead connection that sent no FIN.
                        try:
                            await asyncio.wait_for(conn.execute("SELECT 1"), 5.0)
                        except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
                            break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            finally:
                self._listener = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2.0)

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        await super().close()
