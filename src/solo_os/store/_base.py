"""The store: everything solo-os keeps, behind one async interface over SQLAlchemy Core.

Both dialects share these queries; ``sqlite.py`` and ``postgres.py`` add what differs (engine
set-up, how JSON text is bound, how workers are woken). Idempotency is a unique constraint
and ``INSERT ... ON CONFLICT DO NOTHING``; claims are ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
and the single writer's ``BEGIN IMMEDIATE`` on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from solo_os import errors
from solo_os.core import json_decoder as _json
from solo_os.core import records
from solo_os.store import _admin, _ratelimit, _retention, _schedules, _schema

ev = _schema.events
ex = _schema.executions
at = _schema.attempts
st = _schema.steps
th = _schema.signin_throttle

EVENT_LIST_COLUMNS = (
    ev.c.id, ev.c.source, ev.c.idempotency_key, ev.c.type, ev.c.status,
    ev.c.correlation_id, ev.c.received_at,
)
EXECUTION_COLUMNS = (
    ex.c.id, ex.c.event_id, ex.c.handler, ex.c.status, ex.c.attempts, ex.c.max_attempts,
    ex.c.last_error, ex.c.correlation_id, ex.c.created_at, ex.c.updated_at, ex.c.run_after,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Filters:
    """What the list commands and the admin API filter on."""

    status: str | None = None
    source: str | None = None
    type: str | None = None
    handler: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    ids: tuple[UUID, ...] | None = None


@dataclass(frozen=True)
class Reaped:
    execution_id: UUID
    attempt: int
    status: str
    worker_id: str
    handler: str = ""
    event_id: UUID | None = None
    correlation_id: str = ""
    losses: int = 1  # how many of its attempts have now been lost, this one included


def lost_error(losses: int) -> str:
    """The error of an execution dead because its attempts kept being lost."""
    return (
        f"lost {losses} times: the process running this execution died during each of its "
        "last attempts (a poison that kills its worker, e.g. os._exit or a crash)"
    )


def _translate(exc: BaseException) -> errors.StoreError:
    """A driver error as ``StoreUnavailable`` (try later) or ``StoreError``."""
    if isinstance(exc, sa.exc.DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
        if (
            exc.connection_invalidated
            or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
            # connection exceptions, too many connections, server shutting down or starting up
            or state.startswith(("08", "57P", "53300"))
        ):
            return errors.StoreUnavailable(f"store unavailable: {type(exc.orig).__name__} {state}".strip())
        return errors.StoreError(f"store error: {type(exc.orig).__name__}: {exc.orig}")
    if isinstance(exc, OSError | TimeoutError | sa.exc.TimeoutError):
        return errors.StoreUnavailable(f"store unavailable: {type(exc).__name__}")
    name = type(exc).__name__
    if "Connection" in name or "CannotConnect" in name or "Postgres" in name:
        return errors.StoreUnavailable(f"store unavailable: {name}")
    return errors.StoreError(f"store error: {name}: {exc}")


class Store(
    _admin.AdminQueries, _retention.Retention, _ratelimit.RateLimitQueries, _schedules.ScheduleQueries
):
    """Async access to events, executions, attempts and steps."""

    dialect: str = ""

    def __init__(self, write_engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        self._engine = write_engine
        self._read_engine = read_engine or write_engine
        self._local_wakeup = asyncio.Event()

    # --- plumbing ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as conn:
                yield conn
        except errors.SoloOSError:
            raise
        except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _translate(exc) from exc
        except Exception as exc:
            # asyncpg raises its own exception tree for lost connections
            if type(exc).__module__.startswith(("asyncpg", "sqlite3", "aiosqlite")):
                raise _translate(exc) from exc
            raise

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._read_engine.connect() as conn:
                yield conn
        except errors.SoloOSError:
            raise
        except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise _translate(exc) from exc
        except Exception as exc:
            if type(exc).__module__.startswith(("asyncpg", "sqlite3", "aiosqlite")):
                raise _translate(exc) from exc
            raise

    def _insert(self, table: sa.Table) -> Any:
        raise NotImplementedError

    def _json_text(self, name: str) -> sa.ColumnElement[Any]:
        """A bound parameter of JSON text stored into a JSON column without re-encoding it."""
        raise NotImplementedError

    async def _notify(self, conn: AsyncConnection) -> None:
        """Tell other processes that work is due (inside the writing transaction)."""

    def wake_local(self) -> None:
        self._local_wakeup.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be due, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._local_wakeup.wait(), timeout)
        self._local_wakeup.clear()

    async def start(self) -> None:
        """Open what the store keeps open (listeners)."""

    async def close(self) -> None:
        await self._engine.dispose()
        if self._read_engine is not self._engine:
            await self._read_engine.dispose()

    # --- schema --------------------------------------------------------------------------

    @staticmethod
    def _alembic_config() -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("solo_os.store") / "migrations")
        )
        return cfg

    async def _lock_for_migration(self, conn: AsyncConnection) -> None:
        """Serialize concurrent migrations (several processes starting at once)."""

    async def migrate(self) -> str:
        """Bring the schema to the newest revision; returns it."""
        from alembic import command

        cfg = self._alembic_config()

        def upgrade(sync_conn: sa.Connection) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self._write() as conn:
            await self._lock_for_migration(conn)
            await conn.run_sync(upgrade)
        return self.head_revision()

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        return head or ""

    async def current_revision(self) -> str | None:
        async with self._read() as conn:
            exists = await conn.run_sync(
                lambda c: sa.inspect(c).has_table("alembic_version")
            )
            if not exists:
                return None
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # --- ingest --------------------------------------------------------------------------

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        """Store a batch of deliveries in one transaction; one result per item, in order.

        The batch must not hold two items with the same (source, key); the caller defers such
        repeats to a later batch, where they meet the stored row as duplicates.
        """
        if not batch:
            return []
        # One order for every writer: concurrent batches lock keys in the same sequence and
        # cannot deadlock each other.
        order = sorted(range(len(batch)), key=lambda i: (batch[i].source, batch[i].idempotency_key))
        items = [batch[i] for i in order]
        results: dict[int, records.IngestResult] = {}
        async with self._write() as conn:
            inserted = await self._insert_events(conn, items)
            conflicts = [e for e in items if e.id not in inserted]
            existing = await self._existing(conn, conflicts) if conflicts else {}
            new_executions: list[dict[str, Any]] = []
            for item in items:
                result, event_id = await self._settle(conn, item, item.id in inserted, existing)
                results[id(item)] = result
                if result.outcome == "accepted":
                    new_executions.extend(
                        self._execution_row(
                            x, event_id, item.correlation_id, item.received_at, item.trace_parent
                        )
                        for x in item.executions
                    )
            if new_executions:
                await conn.execute(self._insert(ex), new_executions)
                await self._notify(conn)
        if new_executions:
            self.wake_local()
        return [results[id(e)] for e in batch]

    async def _insert_events(
        self, conn: AsyncConnection, items: Sequence[records.NewEvent]
    ) -> set[UUID]:
        stmt = (
            self._insert(ev)
            .values(payload=self._json_text("p_payload"))
            .on_conflict_do_nothing(index_elements=["source", "idempotency_key"])
            .returning(ev.c.id)
        )
        params = [self._event_row(e) for e in items]
        rows = await conn.execute(stmt, params)
        return {r[0] for r in rows}

    async def _existing(
        self, conn: AsyncConnection, items: Sequence[records.NewEvent]
    ) -> dict[tuple[str, str], tuple[UUID, str]]:
        by_source: dict[str, list[str]] = {}
        for e in items:
            by_source.setdefault(e.source, []).append(e.idempotency_key)
        # "source = ? AND key IN (...)" per source, not a row-value IN: SQLite plans the latter
        # as a scan of the whole table (15x slower ingest at 5 million rows).
        stmt = (
            sa.select(ev.c.id, ev.c.source, ev.c.idempotency_key, ev.c.status)
            .where(
                sa.or_(
                    *(
                        sa.and_(ev.c.source == source, ev.c.idempotency_key.in_(keys))
                        for source, keys in by_source.items()
                    )
                )
            )
            .order_by(ev.c.source, ev.c.idempotency_key)
            .with_for_update()
        )
        rows = await conn.execute(stmt)
        return {(r.source, r.idempotency_key): (r.id, r.status) for r in rows}

    async def _settle(
        self,
        conn: AsyncConnection,
        item: records.NewEvent,
        was_inserted: bool,
        existing: dict[tuple[str, str], tuple[UUID, str]],
    ) -> tuple[records.IngestResult, UUID]:
        if was_inserted:
            if item.status == "rejected":
                return records.IngestResult("rejected", item.id, 0, item.errors), item.id
            return records.IngestResult("accepted", item.id, len(item.executions)), item.id
        found = existing.get((item.source, item.idempotency_key))
        if found is None:  # the conflicting row vanished (purged) between the two statements
            raise errors.StoreUnavailable("event changed concurrently; retry the delivery")
        event_id, status = found
        if status == "accepted":
            return records.IngestResult("duplicate", event_id), event_id
        # The stored event was rejected: this redelivery is judged by the current schema.
        values: dict[str, Any] = {
            "type": item.type,
            "status": item.status,
            "errors": item.errors,
            "updated_at": item.received_at,
        }
        if item.status == "accepted":
            values.update(body=item.body, headers=item.headers, correlation_id=item.correlation_id)
            payload = self._json_text("p_payload")
        else:
            payload = ev.c.payload
        await conn.execute(
            sa.update(ev).where(ev.c.id == event_id).values(payload=payload, **values),
            {"p_payload": item.payload},
        )
        if item.status == "rejected":
            return records.IngestResult("rejected", event_id, 0, item.errors), event_id
        return records.IngestResult("accepted", event_id, len(item.executions)), event_id

    @staticmethod
    def _event_row(e: records.NewEvent) -> dict[str, Any]:
        return {
            "id": e.id,
            "source": e.source,
            "idempotency_key": e.idempotency_key,
            "type": e.type,
            "status": e.status,
            "p_payload": e.payload,
            "body": e.body,
            "headers": e.headers,
            "errors": e.errors,
            "correlation_id": e.correlation_id,
            "received_at": e.received_at,
            "updated_at": e.received_at,
        }

    @staticmethod
    def _execution_row(
        x: records.NewExecution,
        event_id: UUID | None,
        correlation_id: str,
        now: datetime,
        trace_parent: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": x.id,
            "event_id": event_id,
            "handler": x.handler,
            "status": "pending",
            "attempts": 0,
            "max_attempts": x.max_attempts,
            "run_after": now,
            "correlation_id": correlation_id,
            "trace_parent": trace_parent,
            "created_at": now,
            "updated_at": now,
        }

    # --- the worker's side ----------------------------------------------------------------

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
        True only those lost before (the worker runs such a one alone), None any.
        Each claimed execution's stored input is decoded on its own (``read_input``): one that
        cannot be read carries ``input_error`` instead of failing the claim.
        """
        if limit <= 0:
            return []
        cond = [ex.c.status == "pending", ex.c.run_after <= now]
        if lost is not None:
            cond.append(ex.c.losses > 0 if lost else ex.c.losses == 0)
        due_q = sa.select(ex.c.id).where(*cond).order_by(ex.c.run_after).limit(limit)
        if lost:
            due_q = due_q.with_hint(ex, "INDEXED BY ix_executions_lost", "sqlite")
        due = due_q.with_for_update(skip_locked=True).cte("due")
        stmt = (
            sa.update(ex)
            .where(ex.c.id == due.c.id)
            .values(
                status="running",
                attempts=ex.c.attempts + 1,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=now,
                updated_at=now,
            )
            .returning(
                ex.c.id, ex.c.event_id, ex.c.handler, ex.c.attempts, ex.c.max_attempts,
                ex.c.correlation_id, ex.c.scheduled_at, ex.c.trace_parent, ex.c.losses,
            )
        )
        async with self._write() as conn:
            claimed = (await conn.execute(stmt)).all()
            event_ids = {r.event_id for r in claimed if r.event_id is not None}
            events: dict[UUID, Any] = {}
            if event_ids:
                rows = await conn.execute(
                    sa.select(
                        ev.c.id, ev.c.source, ev.c.type, ev.c.idempotency_key, ev.c.received_at,
                        # As stored text: decoded per execution below, never by the driver.
                        sa.type_coerce(ev.c.headers, sa.Text).label("headers"),
                        sa.type_coerce(ev.c.payload, sa.Text).label("payload"),
                        sa.case((ev.c.payload.is_(None), ev.c.body), else_=sa.null()).label("body"),
                    ).where(ev.c.id.in_(event_ids))
                )
                events = {r.id: r for r in rows}
        out = []
        for r in claimed:
            e = events.get(r.event_id) if r.event_id is not None else None
            document: Any = None
            headers: dict[str, str] | None = None
            problem: str | None = None
            if e is not None:
                document, headers, problem = read_input(e.payload, e.body, e.headers)
            out.append(
                records.Claimed(
                    id=r.id,
                    event_id=r.event_id,
                    handler=r.handler,
                    attempt=r.attempts,
                    max_attempts=r.max_attempts,
                    correlation_id=r.correlation_id,
                    source=e.source if e is not None else None,
                    event_type=e.type if e is not None else None,
                    idempotency_key=e.idempotency_key if e is not None else None,
                    received_at=e.received_at if e is not None else None,
                    headers=headers,
                    document=document,
                    scheduled_at=r.scheduled_at,
                    trace_parent=r.trace_parent,
                    input_error=problem,
                    losses=r.losses,
                )
            )
        return out

    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        """Write attempts' outcomes in one transaction.

        Returns the results that took effect: a result whose lease this worker no longer holds
        (it expired and the execution was taken back) changes nothing but its attempt record.
        """
        if not results:
            return []
        now = utcnow()
        update_stmt = (
            sa.update(ex)
            .where(
                ex.c.id == sa.bindparam("b_id"),
                ex.c.worker_id == worker_id,
                ex.c.attempts == sa.bindparam("b_attempt"),
                ex.c.status == "running",
            )
            .values(
                status=sa.bindparam("b_status"),
                run_after=sa.func.coalesce(
                    sa.bindparam("b_run_after", type_=_schema.UTCDateTime), ex.c.run_after
                ),
                last_error=sa.bindparam("b_error", type_=sa.Text),
                lease_expires_at=None,
                worker_id=None,
                started_at=None,
                updated_at=now,
            )
        )
        params = [
            {
                "b_id": r.execution_id,
                "b_attempt": r.attempt,
                "b_status": r.next_status,
                "b_run_after": r.run_after,
                "b_error": _last_error(r),
            }
            for r in results
        ]
        attempt_rows = [
            {
                "execution_id": r.execution_id,
                "attempt": r.attempt,
                "worker_id": worker_id,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "outcome": r.outcome,
                "error_type": r.error_type,
                "error_message": r.error_message,
                "traceback": r.traceback,
            }
            for r in results
        ]
        async with self._write() as conn:
            applied_ids = await self._apply_finished(conn, worker_id, update_stmt, params, now)
            applied = [r for r in results if r.execution_id in applied_ids]
            await conn.execute(
                self._insert(at).on_conflict_do_nothing(
                    index_elements=["execution_id", "attempt"]
                ),
                attempt_rows,
            )
            if any(r.next_status == "pending" for r in applied):
                await self._notify(conn)
        return applied

    async def _apply_finished(
        self,
        conn: AsyncConnection,
        worker_id: str,
        update_stmt: Any,
        params: list[dict[str, Any]],
        now: datetime,
    ) -> set[UUID]:
        """Run the outcome updates; return the ids whose lease this worker still held."""
        res = await conn.execute(update_stmt, params)
        if res.rowcount == len(params):
            return {p["b_id"] for p in params}
        # Some leases were lost (their rows were not updated): find out which (rare path).
        held = await conn.execute(
            sa.select(ex.c.id).where(
                ex.c.id.in_([p["b_id"] for p in params]), ex.c.updated_at == now
            )
        )
        return {row.id for row in held}

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
        async with self._write() as conn:
            for chunk in [None] if ids is None else _chunks(list(ids), 500):
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
        async with self._write() as conn:
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
                    self._insert(at).on_conflict_do_nothing(
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
                await self._notify(conn)
        return len(rows)

    async def lost_due(self, now: datetime) -> bool:
        """Whether an execution lost before (``losses > 0``) is due: it waits to run alone."""
        q = (
            sa.select(ex.c.id)
            .where(ex.c.status == "pending", ex.c.run_after <= now, ex.c.losses > 0)
            .limit(1)
            # The small partial index of lost executions, not a scan of the pending backlog
            # (SQLite without statistics would pick the status index).
            .with_hint(ex, "INDEXED BY ix_executions_lost", "sqlite")
        )
        async with self._read() as conn:
            return (await conn.execute(q)).first() is not None

    async def reap(self, now: datetime, limit: int = 500, max_losses: int = 3) -> list[Reaped]:
        """Take back executions whose lease expired (their process died): the attempt is lost.

        A lost attempt is recorded (outcome ``lost``) but does not spend the execution's budget
        (``max_attempts`` grows by one, as for an interrupted attempt): the execution did
        nothing wrong that we know of, and the next claim runs it alone (``claim(lost=True)``)
        so its neighbours are not lost with it again. One lost ``max_losses`` times is dead:
        it takes its process down with it (a poison).
        """
        async with self._write() as conn:
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
            message = "lease expired: the worker running this attempt was lost"
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
                    {
                        "b_id": x.execution_id, "b_attempt": x.attempt, "b_status": x.status,
                        "b_error": lost_error(x.losses) if x.status == "dead" else message,
                    }
                    for x in reaped
                ],
            )
            await conn.execute(
                self._insert(at).on_conflict_do_nothing(index_elements=["execution_id", "attempt"]),
                [
                    {
                        "execution_id": r.id,
                        "attempt": r.attempts,
                        "worker_id": r.worker_id or "",
                        "started_at": r.started_at or now,
                        "ended_at": now,
                        "outcome": "lost",
                        "error_type": "LeaseExpired",
                        "error_message": lost_error(x.losses) if x.status == "dead" else message,
                        "traceback": None,
                    }
                    for r, x in zip(rows, reaped, strict=True)
                ],
            )
            await self._notify(conn)
        self.wake_local()
        return reaped

    # --- the admin sign-in throttle (shared by every process) --------------------------------

    async def signin_failures(self, client: str, now: datetime, window: float) -> int:
        """Failed sign-ins of ``client`` in its current window (0 once the window has passed)."""
        q = sa.select(th.c.failures, th.c.window_start).where(th.c.client == client)
        async with self._read() as conn:
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
        stmt = self._insert(th).values(client=client, failures=1, window_start=now, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["client"],
            set_={
                "failures": sa.case((th.c.window_start <= expired, 1), else_=th.c.failures + 1),
                "window_start": sa.case((th.c.window_start <= expired, now), else_=th.c.window_start),
                "updated_at": now,
            },
        ).returning(th.c.failures)
        async with self._write() as conn:
            failures = int((await conn.execute(stmt)).scalar_one())
            await conn.execute(sa.delete(th).where(th.c.updated_at <= expired))
        return failures

    async def signin_succeeded(self, client: str) -> None:
        async with self._write() as conn:
            await conn.execute(sa.delete(th).where(th.c.client == client))

    # --- dead letters ---------------------------------------------------------------------

    async def matching_ids(self, f: Filters) -> list[UUID]:
        """Ids of executions that match ``f`` (all of them when ``f.limit`` is 0), oldest first."""
        q = sa.select(ex.c.id).order_by(ex.c.updated_at, ex.c.id)
        q = self._filtered(q, f)
        if f.limit:
            q = q.limit(f.limit)
        async with self._read() as conn:
            return [r[0] for r in await conn.execute(q)]

    async def replay(
        self, ids: Sequence[UUID], budgets: Mapping[str, int], default_budget: int, now: datetime
    ) -> list[UUID]:
        """Put dead executions back to pending with a fresh attempt budget; history stays.

        ``budgets`` maps handler names to their ``max_attempts``; the new budget is counted on
        top of the attempts already made, so attempt numbers keep increasing.
        """
        if not ids:
            return []
        budget = (
            sa.case(dict(budgets), value=ex.c.handler, else_=default_budget)
            if budgets
            else sa.literal(default_budget)
        )
        out: list[UUID] = []
        async with self._write() as conn:
            for chunk in _chunks(list(ids), 500):
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
                await self._notify(conn)
        if out:
            self.wake_local()
        return out

    async def cancel(self, ids: Sequence[UUID], now: datetime) -> list[UUID]:
        """Cancel pending or dead executions (a running one finishes its attempt first)."""
        out: list[UUID] = []
        async with self._write() as conn:
            for chunk in _chunks(list(ids), 500):
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
        async with self._write() as conn:
            for chunk in _chunks(list(ids), 500):
                res = await conn.execute(
                    sa.delete(ex).where(ex.c.id.in_(chunk), ex.c.status.in_(("dead", "cancelled")))
                )
                deleted += int(res.rowcount or 0)
        return deleted

    # --- durable steps --------------------------------------------------------------------

    async def load_steps(self, execution_id: UUID) -> dict[str, Any]:
        async with self._read() as conn:
            rows = await conn.execute(
                sa.select(st.c.name, st.c.result).where(st.c.execution_id == execution_id)
            )
            return {r.name: r.result for r in rows}

    async def save_step(
        self, execution_id: UUID, name: str, result_json: str, attempt: int
    ) -> None:
        """Record a step's result; the first record wins (a lost attempt may race a new one)."""
        stmt = self._insert(st).values(result=self._json_text("p_result"))
        async with self._write() as conn:
            await conn.execute(
                stmt.on_conflict_do_nothing(index_elements=["execution_id", "name"]),
                {"execution_id": execution_id, "name": name, "p_result": result_json,
                 "attempt": attempt, "created_at": utcnow()},
            )

    # --- reading ---------------------------------------------------------------------------

    async def list_events(self, f: Filters) -> list[records.Event]:
        q = sa.select(*EVENT_LIST_COLUMNS).order_by(ev.c.received_at.desc(), ev.c.id.desc())
        if f.status:
            q = q.where(ev.c.status == f.status)
        if f.source:
            q = q.where(ev.c.source == f.source)
        if f.type:
            q = q.where(ev.c.type == f.type)
        if f.since:
            q = q.where(ev.c.received_at >= f.since)
        if f.until:
            q = q.where(ev.c.received_at < f.until)
        if f.limit:
            q = q.limit(f.limit)
        async with self._read() as conn:
            return [records.Event.from_row(r._mapping) for r in await conn.execute(q)]

    async def get_event(self, event_id: UUID) -> tuple[records.Event, bytes] | None:
        q = sa.select(ev).where(ev.c.id == event_id)
        async with self._read() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        return records.Event.from_row(row._mapping), row.body

    def _filtered(self, q: Any, f: Filters) -> Any:
        """``q`` (over executions) narrowed by ``f``'s status, handler, error, time, source, type."""
        if f.ids is not None:
            q = q.where(ex.c.id.in_(f.ids))
        if f.status:
            q = q.where(ex.c.status == f.status)
        if f.handler:
            q = q.where(ex.c.handler == f.handler)
        if f.error:
            q = q.where(ex.c.last_error.contains(f.error, autoescape=True))
        if f.since:
            q = q.where(ex.c.updated_at >= f.since)
        if f.until:
            q = q.where(ex.c.updated_at < f.until)
        if f.source or f.type:
            q = q.join(ev, ev.c.id == ex.c.event_id)
            if f.source:
                q = q.where(ev.c.source == f.source)
            if f.type:
                q = q.where(ev.c.type == f.type)
        return q

    async def list_executions(
        self, f: Filters, event_id: UUID | None = None
    ) -> list[records.Execution]:
        """Newest first; ``since``/``until`` apply to the last change (``updated_at``)."""
        q = sa.select(*EXECUTION_COLUMNS).order_by(ex.c.created_at.desc(), ex.c.id.desc())
        if event_id is not None:
            q = q.where(ex.c.event_id == event_id)
        q = self._filtered(q, f)
        if f.limit:
            q = q.limit(f.limit)
        async with self._read() as conn:
            return [records.Execution.from_row(r._mapping) for r in await conn.execute(q)]

    async def get_execution(self, execution_id: UUID) -> records.Execution | None:
        q = sa.select(*EXECUTION_COLUMNS).where(ex.c.id == execution_id)
        async with self._read() as conn:
            row = (await conn.execute(q)).first()
        return records.Execution.from_row(row._mapping) if row is not None else None

    async def list_attempts(self, execution_id: UUID) -> list[records.Attempt]:
        q = sa.select(at).where(at.c.execution_id == execution_id).order_by(at.c.attempt)
        async with self._read() as conn:
            return [records.Attempt.from_row(r._mapping) for r in await conn.execute(q)]

    async def counts(self) -> dict[str, int]:
        """Executions by status (queue depth for metrics and the dashboard)."""
        q = sa.select(ex.c.status, sa.func.count()).group_by(ex.c.status)
        async with self._read() as conn:
            found = {row[0]: int(row[1]) for row in await conn.execute(q)}
        return {s: found.get(s, 0) for s in records.EXECUTION_STATUSES}


def _chunks(items: list[UUID], size: int) -> Iterator[list[UUID]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _last_error(r: records.Finished) -> str | None:
    if r.next_status == "succeeded":
        return None
    text = f"{r.error_type}: {r.error_message}" if r.error_type else (r.error_message or "")
    return text[:4000]


def read_input(
    payload: str | bytes | None, body: bytes | None, headers: str | bytes | None
) -> tuple[Any, dict[str, str] | None, str | None]:
    """One claimed execution's stored input: ``(document, headers, problem)``.

    ``payload`` and ``headers`` are the stored JSON text; ``body`` the raw delivery, read where
    no payload could be kept (PostgreSQL's jsonb refuses ``\\u0000``, see ingress). Decoded with
    the decoder ingress used (``solo_os.core.json_decoder``). Anything that goes wrong is returned as
    ``problem`` for the worker to fail this execution with; it never escapes into the claim.
    """
    try:
        document: Any = None
        if payload is not None:
            document = _json.loads(payload)
        elif body is not None:
            document = _json.loads(body)
        decoded: Any = _json.loads(headers) if headers is not None else None
        if decoded is not None and not isinstance(decoded, dict):
            raise ValueError("stored headers are not an object")
    except Exception as exc:  # RecursionError, MemoryError, ...: whatever a stored row holds
        return None, None, f"{type(exc).__name__}: {str(exc)[:500]}"
    return document, decoded, None
