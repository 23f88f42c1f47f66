"""The store: everything solo-os keeps, behind one async interface over SQLAlchemy Core.

``Store`` is the union of the query modules, each the implementation of one or two ports
(``ports.py``): ``_ingest``, ``_queue``, ``_reads``, ``_dead_letters``, ``_throttle``,
``_logs``, ``_admin``, ``_stats``, ``_schedules``, ``_alerts``, ``_ratelimit``,
``_retention``. They share nothing by inheritance: each reaches connections, transactions
and the dialect's hooks through ``self._db`` (``_db.Database``). ``sqlite.py`` and
``postgres.py`` provide the ``Dialect`` hooks and what differs as whole operations (claim and
finish; PostgreSQL's single-statement hot path). Idempotency is a unique constraint and
``INSERT ... ON CONFLICT DO NOTHING``; claims are ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
and the single writer's ``BEGIN IMMEDIATE`` on SQLite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from solo_os.core import records
from solo_os.store import (
    _admin,
    _alerts,
    _db,
    _dead_letters,
    _ingest,
    _logs,
    _queue,
    _ratelimit,
    _reads,
    _retention,
    _schedules,
    _stats,
    _throttle,
)
from solo_os.store._db import _translate, utcnow
from solo_os.store._rows import Filters, Reaped, lost_error, read_input


class Store(
    _ingest.IngestQueries,
    _queue.QueueQueries,
    _reads.ReadQueries,
    _dead_letters.DeadLetterQueries,
    _throttle.ThrottleQueries,
    _logs.LogQueries,
    _admin.AdminQueries,
    _stats.StatsQueries,
    _schedules.ScheduleQueries,
    _alerts.AlertQueries,
    _ratelimit.RateLimitQueries,
    _retention.Retention,
):
    """Async access to everything solo-os keeps; ``SQLiteStore`` or ``PostgresStore``."""

    dialect: str = ""

    def __init__(
        self, dialect: _db.Dialect, write_engine: AsyncEngine, read_engine: AsyncEngine | None = None
    ) -> None:
        self._db = _db.Database(dialect, write_engine, read_engine)
        self._engine = self._db.engine
        self._read_engine = self._db.read_engine

    # --- the dialect's operations (each store provides them) -----------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_seconds: float,
        *,
        lost: bool | None = None,
    ) -> list[records.Claimed]:
        """Lease up to ``limit`` due executions to ``worker_id``, oldest due first.

        ``lost`` narrows the claim: False takes only executions never lost with a process,
        True only those lost before (the worker runs such a one alone), None any. Each
        claimed execution's stored input is decoded on its own (``_rows.read_input``): one
        that cannot be read carries ``input_error`` instead of failing the claim.
        """
        raise NotImplementedError

    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        """Write attempts' outcomes; returns the results that took effect.

        A result whose lease this worker no longer holds (it expired and the execution was
        taken back) changes nothing but its attempt record.
        """
        raise NotImplementedError

    # --- plumbing ------------------------------------------------------------------------

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._db.write()

    def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._db.read()

    def _json_text(self, name: str) -> sa.ColumnElement[Any]:
        return self._db.json_text(name)

    def wake_local(self) -> None:
        self._db.wake_local()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be due, or after ``timeout`` seconds."""
        await self._db.wait_for_work(timeout)

    async def start(self) -> None:
        """Open what the store keeps open (listeners)."""

    async def close(self) -> None:
        await self._db.dispose()

    # --- schema --------------------------------------------------------------------------

    @staticmethod
    def _alembic_config() -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("solo_os.store") / "migrations")
        )
        return cfg

    async def migrate(self) -> str:
        """Bring the schema to the newest revision; returns it."""
        from alembic import command

        cfg = self._alembic_config()

        def upgrade(sync_conn: sa.Connection) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self._db.write() as conn:
            await self._db.dialect.lock_for_migration(conn)
            await conn.run_sync(upgrade)
        return self.head_revision()

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        return head or ""

    async def current_revision(self) -> str | None:
        async with self._db.read() as conn:
            exists = await conn.run_sync(
                lambda c: sa.inspect(c).has_table("alembic_version")
            )
            if not exists:
                return None
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()

    async def ping(self) -> None:
        async with self._db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))


__all__ = ["Filters", "Reaped", "Store", "_translate", "lost_error", "read_input", "utcnow"]
