"""Retention: prune finished executions and old events in small batches; table sizes.

Part of ``Store`` (``RetentionPort``). What goes:

- executions that finished (``succeeded``, ``cancelled``; ``dead`` only when asked) and last
  changed before the cut-off, with their attempts and steps (foreign-key cascade);
- events received before ``max(retention, 7 days)`` none of whose executions stay. An event
  is its idempotency key, so keeping it at least a week keeps a provider's late redelivery a
  duplicate; an event with a pending, running or dead execution is never deleted.

Deletes run in batches of ``batch_size`` rows, one short transaction each, so ingest and
workers keep writing in between. ``solo_os.runtime.pruner`` runs it once a day inside the worker role; on
PostgreSQL a session advisory lock lets one process prune at a time (SQLite's single writer
serializes the batches anyway): the dialect's ``exclusive`` hook.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from solo_os import errors
from solo_os.store import _db, _schema

log = structlog.get_logger("solo_os.retention")

ev = _schema.events
ex = _schema.executions

IDEMPOTENCY_FLOOR = timedelta(days=7)
FINISHED = ("succeeded", "cancelled", "skipped")
BATCH_SIZE = 500
PRUNE_LOCK = 0x501006  # pg_try_advisory_lock key: one pruning process at a time


@dataclass(frozen=True)
class PruneResult:
    executions: int
    events: int
    execution_cutoff: datetime
    event_cutoff: datetime
    dry_run: bool = False


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    bytes: int | None  # None where the database cannot tell (SQLite without dbstat)


@dataclass(frozen=True)
class DatabaseStats:
    dialect: str
    tables: list[TableSize]
    total_bytes: int | None


def _now() -> datetime:
    return datetime.now(UTC)


class RetentionQueries:
    """Pruning and table statistics (``RetentionPort``)."""

    def __init__(self, db: _db.Database) -> None:
        self._db = db

    # --- pruning ---------------------------------------------------------------------------

    async def prune(
        self,
        older_than: timedelta,
        *,
        include_dead: bool = False,
        dry_run: bool = False,
        now: datetime | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> PruneResult:
        """Delete what finished before ``now - older_than`` (see the module's rules)."""
        if older_than < timedelta(0):
            raise errors.ConfigError("retention: the age to prune at cannot be negative")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        now = now or _now()
        ex_cutoff = now - older_than
        ev_cutoff = now - max(older_than, IDEMPOTENCY_FLOOR)
        statuses = (*FINISHED, "dead") if include_dead else FINISHED
        prunable_ex = sa.and_(ex.c.status.in_(statuses), ex.c.updated_at < ex_cutoff)
        # An event goes only when every execution it has would go too.
        staying = sa.exists().where(ex.c.event_id == ev.c.id, sa.not_(prunable_ex))
        prunable_ev = sa.and_(ev.c.received_at < ev_cutoff, sa.not_(staying))
        if dry_run:
            async with self._db.read() as conn:
                n_ex = await conn.scalar(sa.select(sa.func.count()).select_from(ex).where(prunable_ex))
                n_ev = await conn.scalar(sa.select(sa.func.count()).select_from(ev).where(prunable_ev))
            return PruneResult(int(n_ex or 0), int(n_ev or 0), ex_cutoff, ev_cutoff, dry_run=True)
        n_ex = await self._delete_batches(ex, ex.c.id, prunable_ex, batch_size)
        n_ev = await self._delete_batches(ev, ev.c.id, prunable_ev, batch_size)
        return PruneResult(n_ex, n_ev, ex_cutoff, ev_cutoff)

    async def _delete_batches(self, table: sa.Table, key: Any, condition: Any, batch_size: int) -> int:
        deleted = 0
        while True:
            batch = sa.select(key).where(condition).limit(batch_size).scalar_subquery()
            async with self._db.write() as conn:
                result = await conn.execute(sa.delete(table).where(key.in_(batch), condition))
            n = int(result.rowcount or 0)
            deleted += n
            if n < batch_size:
                return deleted
            await asyncio.sleep(0)  # let waiting writers (ingest, workers) in between batches

    async def prune_exclusive(
        self, older_than: timedelta, *, include_dead: bool = False
    ) -> PruneResult | None:
        """``prune`` unless another process is pruning this database now (then None)."""
        async with self._db.dialect.exclusive(self._db.read, PRUNE_LOCK) as got:
            if not got:
                return None
            return await self.prune(older_than, include_dead=include_dead)

    # --- statistics --------------------------------------------------------------------------

    async def table_stats(self) -> DatabaseStats:
        """Rows and bytes (with indexes) of every table, and the database's total size."""
        async with self._db.read() as conn:
            names: list[str] = await conn.run_sync(lambda c: sorted(sa.inspect(c).get_table_names()))
            rows: dict[str, int] = {}
            for name in names:
                rows[name] = int(
                    await conn.scalar(sa.select(sa.func.count()).select_from(sa.table(name))) or 0
                )
            sizes, total = await self._db.dialect.table_sizes(conn, names)
        tables = [TableSize(n, rows[n], sizes.get(n)) for n in names]
        return DatabaseStats(self._db.dialect.name, tables, total)


if TYPE_CHECKING:  # the name callers typed against before the ports
    from solo_os.store.ports import RetentionPort as Retention

    __all__ = ["Retention"]
