"""The scale-out store: PostgreSQL through asyncpg, workers woken by LISTEN/NOTIFY.

The three statements on the hot path (ingest, claim, finish) go straight to an asyncpg pool as
single statements over arrays (``unnest``): each is its own transaction, so a batch costs one
round trip and one commit, with no ``BEGIN``/``COMMIT`` exchanges and none of SQLAlchemy's
per-statement work. Everything else (rare paths, reads, migrations) uses SQLAlchemy Core from
``_base``. At thousands of deliveries a second on two cores, that difference is most of the
CPU budget (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from solo_os import errors
from solo_os.core import records
from solo_os.store import _base

CHANNEL = "solo_os_work"  # also spelled out in _INGEST and _FINISH below
MIGRATION_LOCK = 0x501005  # pg_advisory_xact_lock key: one migrating process at a time
log = structlog.get_logger("solo_os.store")

# Inserts the events that are new and the executions of the accepted ones among them, in one
# statement (foreign keys are checked at its end, when both are in). Rows that conflict are not
# returned; the caller settles them (duplicates, re-validated rejects) on the general path.
_INGEST = """
WITH ev_in AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[],
        $8::text[], $9::text[], $10::text[], $11::timestamptz[]
    ) AS t(id, source, idempotency_key, type, status, payload, body, headers, errors,
           correlation_id, received_at)
), ins AS (
    INSERT INTO events (id, source, idempotency_key, type, status, payload, body, headers,
                        errors, correlation_id, received_at, updated_at)
    SELECT id, source, idempotency_key, type, status, payload::jsonb, body, headers::jsonb,
           errors::jsonb, correlation_id, received_at, received_at
    FROM ev_in ORDER BY source, idempotency_key
    ON CONFLICT (source, idempotency_key) DO NOTHING
    RETURNING id, status
), x_in AS (
    SELECT * FROM unnest(
        $12::uuid[], $13::uuid[], $14::text[], $15::int[], $16::text[], $17::timestamptz[],
        $18::text[]
    ) AS t(id, event_id, handler, max_attempts, correlation_id, created_at, trace_parent)
), x_ins AS (
    INSERT INTO executions (id, event_id, handler, status, attempts, max_attempts, run_after,
                            correlation_id, trace_parent, created_at, updated_at)
    SELECT x.id, x.event_id, x.handler, 'pending', 0, x.max_attempts, x.created_at,
           x.correlation_id, x.trace_parent, x.created_at, x.created_at
    FROM x_in x JOIN ins ON ins.id = x.event_id AND ins.status = 'accepted'
    RETURNING 1
)
SELECT ins.id,
       (SELECT count(*) FROM (SELECT pg_notify('solo_os_work', '') FROM x_ins LIMIT 1) AS n) AS woke
FROM ins
"""

_CLAIM = """
WITH due AS (
    SELECT id FROM executions
    WHERE status = 'pending' AND run_after <= $1 AND ($5::bool IS NULL OR (losses > 0) = $5)
    ORDER BY run_after
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE executions AS e
    SET status = 'running', attempts = e.attempts + 1, worker_id = $3,
        lease_expires_at = $4, started_at = $1, updated_at = $1
    FROM due WHERE e.id = due.id
    RETURNING e.id, e.event_id, e.handler, e.attempts, e.max_attempts, e.correlation_id,
              e.scheduled_at, e.trace_parent, e.losses
)
SELECT upd.*, ev.source, ev.type, ev.idempotency_key, ev.received_at,
       ev.headers::text AS headers, ev.payload::text AS payload,
       CASE WHEN ev.id IS NOT NULL AND ev.payload IS NULL THEN ev.body END AS body
FROM upd LEFT JOIN events AS ev ON ev.id = upd.event_id
"""

_FINISH = """
WITH r AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::timestamptz[],
        $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[]
    ) AS t(id, attempt, status, run_after, error, started_at, ended_at, outcome, error_type,
           error_message, traceback)
), upd AS (
    UPDATE executions AS e SET
        status = r.status,
        run_after = COALESCE(r.run_after, e.run_after),
        last_error = r.error,
        lease_expires_at = NULL, worker_id = NULL, started_at = NULL,
        updated_at = $12
    FROM r
    WHERE e.id = r.id AND e.worker_id = $13 AND e.attempts = r.attempt AND e.status = 'running'
    RETURNING e.id, e.status, e.run_after
), att AS (
    INSERT INTO attempts (execution_id, attempt, worker_id, started_at, ended_at, outcome,
                          error_type, error_message, traceback)
    SELECT id, attempt, $13, started_at, ended_at, outcome, error_type, error_message, traceback
    FROM r
    ON CONFLICT (execution_id, attempt) DO NOTHING
)
SELECT upd.id,
       (SELECT count(*) FROM (
           SELECT pg_notify('solo_os_work', '') FROM upd
           WHERE upd.status = 'pending' AND upd.run_after <= $12 LIMIT 1) AS n) AS woke
FROM upd
"""


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pool connections keep no session state: skip asyncpg's reset round trip on release."""


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


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
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def _json_text(self, name: str) -> sa.ColumnElement[Any]:
        return sa.cast(sa.bindparam(name, type_=sa.Text), postgresql.JSONB)

    async def _notify(self, conn: AsyncConnection) -> None:
        # Delivered at commit, once per transaction and channel (PostgreSQL folds duplicates).
        await conn.execute(sa.text(f"NOTIFY {CHANNEL}"))

    async def _lock_for_migration(self, conn: AsyncConnection) -> None:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})

    # --- the hot path -----------------------------------------------------------------------

    async def _hot_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=5,
                        command_timeout=60,
                        reset=_no_reset,
                        server_settings={"application_name": "solo-os"},
                    )
        return self._pool

    @contextlib.asynccontextmanager
    async def _hot(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            pool = await self._hot_pool()
            async with pool.acquire() as conn:
                yield conn
        except errors.SoloOSError:
            raise
        except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                asyncpg.InternalClientError, asyncpg.OperatorInterventionError,
                asyncpg.TooManyConnectionsError) as exc:
            # Lost connections, a server shutting down or starting up, a full server: all pass.
            raise errors.StoreUnavailable(f"store unavailable: {type(exc).__name__}") from exc
        except asyncpg.PostgresError as exc:
            raise errors.StoreError(f"store error: {type(exc).__name__}: {exc}") from exc

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        if not batch:
            return []
        executions = [(e, x) for e in batch if e.status == "accepted" for x in e.executions]
        async with self._hot() as conn:
            rows = await conn.fetch(
                _INGEST,
                [e.id for e in batch],
                [e.source for e in batch],
                [e.idempotency_key for e in batch],
                [e.type for e in batch],
                [e.status for e in batch],
                [e.payload for e in batch],
                [e.body for e in batch],
                [_dumps(e.headers) for e in batch],
                [_dumps(e.errors) for e in batch],
                [e.correlation_id for e in batch],
                [e.received_at for e in batch],
                [x.id for _, x in executions],
                [e.id for e, _ in executions],
                [x.handler for _, x in executions],
                [x.max_attempts for _, x in executions],
                [e.correlation_id for e, _ in executions],
                [e.received_at for e, _ in executions],
                [e.trace_parent for e, _ in executions],
            )
        inserted = {r["id"] for r in rows}
        if any(r["woke"] for r in rows):
            self.wake_local()
        results: dict[int, records.IngestResult] = {}
        for e in batch:
            if e.id in inserted:
                results[id(e)] = (
                    records.IngestResult("accepted", e.id, len(e.executions))
                    if e.status == "accepted"
                    else records.IngestResult("rejected", e.id, 0, e.errors)
                )
        rest = [e for e in batch if e.id not in inserted]
        if rest:
            # Duplicates, and redeliveries of rejected events: the general, locking path.
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
        if limit <= 0:
            return []
        async with self._hot() as conn:
            rows = await conn.fetch(
                _CLAIM, now, limit, worker_id, now + timedelta(seconds=lease_seconds), lost
            )
        out = []
        for r in rows:
            document, headers, problem = _base.read_input(r["payload"], r["body"], r["headers"])
            out.append(
                records.Claimed(
                    id=r["id"],
                    event_id=r["event_id"],
                    handler=r["handler"],
                    attempt=r["attempts"],
                    max_attempts=r["max_attempts"],
                    correlation_id=r["correlation_id"],
                    source=r["source"],
                    event_type=r["type"],
                    idempotency_key=r["idempotency_key"],
                    received_at=r["received_at"],
                    headers=headers,
                    document=document,
                    scheduled_at=r["scheduled_at"],
                    trace_parent=r["trace_parent"],
                    input_error=problem,
                    losses=r["losses"],
                )
            )
        return out

    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        if not results:
            return []
        now = _base.utcnow()
        async with self._hot() as conn:
            rows = await conn.fetch(
                _FINISH,
                [r.execution_id for r in results],
                [r.attempt for r in results],
                [r.next_status for r in results],
                [r.run_after for r in results],
                [_base._last_error(r) for r in results],
                [r.started_at for r in results],
                [r.ended_at for r in results],
                [r.outcome for r in results],
                [r.error_type for r in results],
                [r.error_message for r in results],
                [r.traceback for r in results],
                now,
                worker_id,
            )
        applied = {r["id"] for r in rows}
        if any(r["woke"] for r in rows):
            self.wake_local()
        return [r for r in results if r.execution_id in applied]

    # --- listening ----------------------------------------------------------------------------

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
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5.0)
            self._pool = None
        await super().close()
