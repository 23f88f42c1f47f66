"""The scale-out store: PostgreSQL through asyncpg, workers woken by LISTEN/NOTIFY.

The three statements on the hot path (ingest, claim, finish; their SQL is in
``sql/postgres/``, see ``_pg_sql``) go straight to an asyncpg pool as
single statements over arrays (``unnest``): each is its own transaction, so a batch costs one
round trip and one commit, with no ``BEGIN``/``COMMIT`` exchanges and none of SQLAlchemy's
per-statement work. Everything else (rare paths, reads, migrations) uses SQLAlchemy Core from
the query modules. At thousands of deliveries a second on two cores, that difference is most of the
CPU budget (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from solo_os import errors
from solo_os.core import records
from solo_os.store import _base, _clock, _db, _flow, _pg_flow, _pg_sql, _pg_workflow, _pool, _rows, _schema
from solo_os.store._admin import TRGM_INDEX
from solo_os.store._db import utcnow
from solo_os.store._pg_ingest import duplicates, statement_answers
from solo_os.store._pg_sql import CHANNEL, TIMERS

MIGRATION_LOCK = 0x501005  # pg_advisory_xact_lock key: one migrating process at a time
log = structlog.get_logger("solo_os.store")
# Lost connections, a server shutting down or starting up, a full server: all pass.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.InternalClientError,
    asyncpg.OperatorInterventionError, asyncpg.TooManyConnectionsError,
)


def _lock_id(key: str) -> int:
    """A signed 64-bit advisory lock id for ``key``."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pool connections keep no session state: skip asyncpg's reset round trip on release."""


async def _measure_clock(conn: asyncpg.Connection) -> None:
    """How far this host's clock is from the database's (``_clock``), on a new connection."""
    sent = _clock.local()
    database = await conn.fetchval("SELECT clock_timestamp()")
    _clock.observe(sent, database, _clock.local())


class PostgresDialect:
    """PostgreSQL's hooks (``_db.Dialect``)."""

    name = "postgresql"
    concurrent_writers = 4

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def json_text(self, name: str) -> sa.ColumnElement[Any]:
        return sa.cast(sa.bindparam(name, type_=sa.Text), postgresql.JSONB)

    async def notify(self, conn: AsyncConnection) -> None:
        # Delivered at commit, once per transaction and channel (PostgreSQL folds duplicates).
        await conn.execute(sa.text(f"NOTIFY {CHANNEL}"))

    async def lock_for_migration(self, conn: AsyncConnection) -> None:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})

    async def lock_waits(self, conn: AsyncConnection, keys: Sequence[int], shared: bool) -> None:
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        for key in sorted(set(keys)):  # one order for every transaction: no deadlock
            await conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": key})

    async def notify_timer(self, conn: AsyncConnection, at: datetime) -> None:
        await conn.execute(sa.text(f"SELECT pg_notify('{TIMERS}', :at)"), {"at": at.isoformat()})

    def wait_key(self, match: Mapping[str, Any] | None, paths: str) -> Any:
        return _pg_workflow.wait_key(match, paths)

    async def resume_waiters(
        self, conn: AsyncConnection, events: Sequence[records.NewEvent], now: datetime
    ) -> bool | None:
        return await _pg_workflow.resume_waiters(conn, events, now)

    @contextlib.asynccontextmanager
    async def exclusive(self, read: _db.ReadConnection, key: int) -> AsyncIterator[bool]:
        """A session advisory lock on a connection of its own, held while inside."""
        async with read() as lock_conn:
            got = await lock_conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            await lock_conn.commit()  # the session lock outlives this transaction
            if not got:
                yield False
                return
            try:
                yield True
            finally:
                try:
                    await lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await lock_conn.commit()
                except Exception:
                    # Never hand a connection that may still hold the lock back to the pool.
                    await lock_conn.invalidate()
                    raise

    async def lock_keys(self, conn: AsyncConnection, keys: Sequence[str]) -> None:
        ids = sorted({_lock_id(k) for k in keys})
        for chunk in _db.chunks(ids):  # one statement; the sorted order holds deadlocks off
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ks AS bigint[])) AS k"),
                {"ks": chunk},
            )

    def clock(self) -> sa.ColumnElement[datetime] | None:
        return sa.func.clock_timestamp(type_=_schema.UTCDateTime)

    def epoch_seconds(self, col: Any) -> Any:
        return sa.extract("epoch", col)

    def floor(self, value: Any) -> Any:
        return sa.func.floor(value)

    async def has_payload_index(self, read: _db.ReadConnection) -> bool:
        async with read() as conn:
            found = await conn.scalar(sa.text(f"SELECT to_regclass('{TRGM_INDEX}') IS NOT NULL"))
        return bool(found)

    async def table_sizes(
        self, conn: AsyncConnection, names: Sequence[str]
    ) -> tuple[dict[str, int | None], int | None]:
        sizes: dict[str, int | None] = {}
        for name in names:
            sizes[name] = await conn.scalar(
                sa.text("SELECT pg_total_relation_size(to_regclass(:n))"), {"n": f'"{name}"'}
            )
        total = await conn.scalar(sa.text("SELECT pg_database_size(current_database())"))
        return sizes, int(total) if total is not None else None


class PostgresStore(_base.Store):
    dialect = "postgresql"

    def __init__(self, url: str, *, options: _pool.Options | None = None) -> None:
        opts = options or _pool.Options()
        engine = create_async_engine(_pool.sqlalchemy_url(url), **_pool.engine_args(opts))
        super().__init__(PostgresDialect(), engine)
        self._dsn = _pool.dsn(url)
        self._opts = opts
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None

    # --- the hot path -----------------------------------------------------------------------

    async def _hot_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._opts.pool_size,
                        timeout=5,
                        command_timeout=60,
                        reset=_no_reset,
                        init=_measure_clock,
                        **_pool.asyncpg_args(self._opts),
                    )
        return self._pool

    @contextlib.asynccontextmanager
    async def _hot(self) -> AsyncIterator[asyncpg.Connection]:
        with _db.translating(_UNAVAILABLE):
            pool = await self._hot_pool()
            conn = await _pool.acquire(pool)
            try:
                yield conn
            finally:
                await pool.release(conn)

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        if not batch:
            return []
        if any(x.flow is not None for e in batch for x in e.executions):
            return await super().ingest(batch)  # flow control decides in the general path
        executions = [(e, x) for e in batch if e.status == "accepted" for x in e.executions]
        args = (
            *_pg_sql.EVENTS.arrays(batch), *_pg_sql.EXECUTIONS.arrays(executions),
            _pg_workflow.lock_keys(batch),
        )
        async with self._hot() as conn:
            # One statement: events, executions, and the waiters they resume (in the same
            # transaction, so a crash cannot lose a resumption). cancel_on rules need more.
            if any(e.cancels for e in batch if e.status == "accepted"):
                async with conn.transaction():
                    rows = await conn.fetch(_pg_sql.INGEST, *args)
                    inserted, repeated = statement_answers(rows)
                    new = [e for e in batch if e.id in inserted and e.status == "accepted"]
                    now = max((e.received_at for e in new), default=utcnow())
                    cancelled = await _pg_workflow.apply_cancels(conn, new, now)
            else:
                rows = await conn.fetch(_pg_sql.INGEST, *args)
                (inserted, repeated), cancelled = statement_answers(rows), False
            unsettled = [e for e in batch if e.id not in inserted and e.id not in repeated]
            if unsettled:  # a key another batch committed meanwhile, or a stored reject
                repeated.update(await duplicates(conn, unsettled))
        if cancelled or any(r["woke"] or r["resumed"] for r in rows):
            self.wake_local()
        results: dict[int, records.IngestResult] = {}
        for e in batch:
            if e.id in inserted:
                results[id(e)] = (
                    records.IngestResult("accepted", e.id, len(e.executions))
                    if e.status == "accepted"
                    else records.IngestResult("rejected", e.id, 0, e.errors)
                )
            elif (dup := repeated.get(e.id)) is not None:
                results[id(e)] = dup  # a repeat of an accepted event (_pg_ingest)
        rest = [e for e in batch if id(e) not in results]
        if rest:
            # Redeliveries of rejected events (and purged rows): the general, locking path.
            for e, result in zip(rest, await super().ingest(rest), strict=True):
                results[id(e)] = result
        return [results[id(e)] for e in batch]

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_seconds: float,
        *,
        lost: bool | None = None,
    ) -> list[records.Claimed]:
        flow = await self._claim_flow(worker_id, limit, now, lease_seconds, lost)
        limit -= len(flow)
        if limit <= 0:
            return flow
        async with self._hot() as conn:
            rows = await conn.fetch(
                _pg_sql.CLAIM, now, limit, worker_id, now + timedelta(seconds=lease_seconds), lost
            )
        return flow + [_rows.claimed(r, r) for r in rows]  # event columns are null for cron runs

    async def _claim_flow(
        self, worker_id: str, limit: int, now: datetime, lease_seconds: float, lost: bool | None
    ) -> list[records.Claimed]:
        plan = self._flow_plan
        if plan is None or limit <= 0 or not _pg_flow.handles(plan):
            return await super()._claim_flow(worker_id, limit, now, lease_seconds, lost)
        async with self._hot() as conn:
            return await _pg_flow.claim(
                conn, _lock_id(_flow.CLAIM_LOCK), plan, worker_id, limit, now, lease_seconds, lost
            )

    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        if not results:
            return []
        now = utcnow()
        sql, columns = _pg_sql.FINISH, _pg_sql.RESULTS
        if all(_pg_sql.plain(r) for r in results):  # the common batch: fewer arrays travel
            sql, columns = _pg_sql.FINISH_SUCCEEDED, _pg_sql.SUCCEEDED
        async with self._hot() as conn:
            rows = await conn.fetch(
                sql, *columns.arrays(results), now, worker_id, self._flow_plan is not None
            )
        applied = {r["id"] for r in rows}
        if any(r["woke"] for r in rows):
            # A retry due now, a parent resumed, or (flow control) a key's slot freed: the
            # statement notified every worker; this process's own worker wakes at once.
            self.wake_local()
        return [r for r in results if r.execution_id in applied]

    # --- listening ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for NOTIFY on a dedicated connection; reconnects in the background. The
        clock offset is measured first (the hot pool's connections measure it as they open),
        so nothing compares times before it is known."""
        with contextlib.suppress(errors.StoreError), _db.translating(_UNAVAILABLE):
            await self._hot_pool()  # when down: measured once it is back
        if self._listen_task is None and self._opts.listens:  # else: the poll interval
            self._listen_task = asyncio.create_task(self._listen_forever(), name="solo-os-listen")

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(
                    _pool.dsn(self._opts.listen_url or self._dsn), timeout=5,
                    **_pool.asyncpg_args(_pool.Options()),  # a direct connection
                )
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
                await conn.add_listener(TIMERS, self._timer_notified)
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                await _measure_clock(conn)
                log.info("store.listening", channel=CHANNEL)
                self.wake_local()  # anything committed while we were not listening
                self._db.timer_stored(None)
                while not lost.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5.0)
                    if not lost.is_set():
                        # A cheap round trip notices a dead connection that sent no FIN, and
                        # measures the clock offset again (a host's clock may be stepped).
                        try:
                            await asyncio.wait_for(_measure_clock(conn), 5.0)
                        except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
                            break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            finally:
                self._listener = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2.0)

    def _timer_notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            at: datetime | None = datetime.fromisoformat(payload)
        except ValueError:
            at = None
        self._db.timer_stored(at)

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5.0)
            self._pool = None
        await super().close()
