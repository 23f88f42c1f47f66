"""The embedded store: one SQLite file in WAL mode, with a single writing connection.

SQLite allows one writer at a time. Writes go through one pooled connection that begins with
``BEGIN IMMEDIATE`` (so a read never has to upgrade to a write lock and deadlock); reads use a
second pool with plain ``BEGIN``, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from solo_os.core import flow as flow_core
from solo_os.core import records
from solo_os.core import workflow as wf
from solo_os.store import (
    _base,
    _db,
    _flow,
    _rows,
    _schema,
    _sqlite_claim,
    _sqlite_driver,
    _sqlite_lock,
    _sqlite_wake,
    _workflow,
)
from solo_os.store._db import utcnow
from solo_os.store._rows import last_error

ev = _schema.events
ex = _schema.executions
at = _schema.attempts

BUSY_TIMEOUT_MS = 15_000
#: Seconds outcomes wait for a claim of their process to write them along with its own.
OUTCOMES_LINGER = 0.02


def _engine(
    url: str, begin: str, pool_size: int, busy_timeout_ms: int,
    *, turn: _sqlite_driver.Turn | None = None,
) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
    # One trip to aiosqlite's thread per statement; none inside the writer's transactions
    # (``turn``: the writing engine), nor for their BEGIN while the turn holds the file lock.
    _sqlite_driver.use_on(engine, in_place=turn is not None, turn=turn)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        # SQLite's default page cache is 2 MB: with millions of rows, inserts into the key index
        # (random keys) would read pages from disk on every delivery. 64 MB of cache and a
        # memory map let the OS page cache serve them instead.
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class SQLiteDialect:
    """SQLite's hooks (``_db.Dialect``)."""

    name = "sqlite"
    concurrent_writers = 1  # one writer at a time (the file's write lock)

    def __init__(self, wakeups: _sqlite_wake.Wakeups) -> None:
        self.wakeups = wakeups
        #: The earliest wake time stored by the writing transaction; signalled after its commit.
        self.timer: datetime | None = None

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def json_text(self, name: str) -> sa.ColumnElement[Any]:
        # SQLite keeps JSON as text: bind the text as it is.
        return sa.bindparam(name, type_=sa.Text)

    async def notify(self, conn: AsyncConnection) -> None:
        """Wake the workers of other processes on this file (``_sqlite_wake``); this process
        wakes its own (``wake_local``) after the commit."""
        self.wakeups.send()

    async def lock_for_migration(self, conn: AsyncConnection) -> None:
        """The writer's ``BEGIN IMMEDIATE`` already serializes migrations."""

    async def lock_waits(self, conn: AsyncConnection, keys: Sequence[int], shared: bool) -> None:
        """The single writer already orders every writing transaction."""

    async def notify_timer(self, conn: AsyncConnection, at: datetime) -> None:
        """Other processes' wake loops are told after the commit (``SQLiteStore._write_turn``)."""
        self.timer = at if self.timer is None else min(self.timer, at)

    def wait_key(self, match: Mapping[str, Any] | None, paths: str) -> Any:
        return wf.match_key(match)  # computed in Python, as ingest computes the events' keys

    async def resume_waiters(
        self, conn: AsyncConnection, events: Sequence[records.NewEvent], now: datetime
    ) -> bool | None:
        return None  # matched in Python (``_workflow``)

    @contextlib.asynccontextmanager
    async def exclusive(self, read: _db.ReadConnection, key: int) -> AsyncIterator[bool]:
        yield True  # the single writer serializes everything anyway

    async def lock_keys(self, conn: AsyncConnection, keys: Sequence[str]) -> None:
        """The single writer already holds the file's write lock."""

    def clock(self) -> sa.ColumnElement[datetime] | None:
        return None  # one host: its clock

    def epoch_seconds(self, col: Any) -> Any:
        # The column holds naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff". Whole seconds and
        # the fraction are read apart: julianday() keeps only milliseconds, and in floating
        # point days not even those.
        whole = sa.cast(sa.func.strftime("%s", col), sa.Integer)
        return whole + sa.cast(sa.func.substr(col, 20), sa.Float)

    def floor(self, value: Any) -> Any:
        return sa.cast(value, sa.Integer)  # truncation is floor for non-negative numbers

    async def has_payload_index(self, read: _db.ReadConnection) -> bool:
        return False

    async def table_sizes(
        self, conn: AsyncConnection, names: Sequence[str]
    ) -> tuple[dict[str, int | None], int | None]:
        page_size = int(await conn.scalar(sa.text("PRAGMA page_size")) or 0)
        page_count = int(await conn.scalar(sa.text("PRAGMA page_count")) or 0)
        sizes: dict[str, int | None] = {}
        try:
            rows = await conn.execute(
                sa.text(
                    "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat AS d "
                    "JOIN sqlite_master AS m ON m.name = d.name GROUP BY m.tbl_name"
                )
            )
            sizes = {r[0]: int(r[1]) for r in rows}
        except sa.exc.OperationalError:  # built without the dbstat table
            sizes = {}
        return sizes, page_size * page_count


class SQLiteStore(_base.Store):
    dialect = "sqlite"

    def __init__(self, url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        folder = _sqlite_wake.folder_for(sa.make_url(url).database)
        self._wakeups = _sqlite_wake.Wakeups(folder)
        self._dialect = SQLiteDialect(self._wakeups)
        # Processes writing to one file take turns at its write lock (SQLite's own wait polls).
        self._writer_lock = _sqlite_lock.WriterLock(folder, busy_timeout_ms / 1000)
        super().__init__(
            self._dialect,
            _engine(url, "BEGIN IMMEDIATE", 1, busy_timeout_ms, turn=self._writer_lock),
            _engine(url, "BEGIN", 4, busy_timeout_ms),
        )
        self._db.write_turn = self._write_turn
        self._db.before_wait = self._listen  # the processes that wait for work or for timers
        self._outcomes: list[_Outcomes] = []  # waiting for a write turn (``finish``)
        #: This process takes deliveries (``solo-os run`` or ``serve``). Its claims then carry no
        #: outcomes: they would lengthen the claim the next ingest waits behind, and the turns'
        #: order (outcomes last) already writes them in large batches; measured, p99 28 -> 32 ms.
        self._ingests = False
        self._hand_off = _sqlite_claim.HandOff()

    def hand_off_to(self, taker: _sqlite_claim.Taker | None) -> None:
        """The worker of this process: an ingest here leases due executions to it in its own
        transaction (``_sqlite_claim``), one writing transaction per delivery instead of two."""
        self._hand_off.taker = taker
        self._db.hand_off = None if taker is None else self._hand_off.lease

    def use_flow(self, plan: flow_core.Plan | None) -> None:
        super().use_flow(plan)
        self._hand_off.enabled = plan is None  # the flow claim fills the free slots first

    def _listen(self) -> None:
        """Be woken by other processes' commits: new work, and new wake times (once)."""
        self._wakeups.listen(self.wake_local, self._db.timer_stored)

    @contextlib.asynccontextmanager
    async def _write_turn(self, background: bool) -> AsyncIterator[None]:
        """Around each writing transaction: this process's turn at the write lock, and the
        timer signal of a wake time it stored, sent once it is committed."""
        async with self._writer_lock.turn(background):
            self._dialect.timer = None
            yield
            timer, self._dialect.timer = self._dialect.timer, None
        if timer is not None:
            self._wakeups.send_timer(timer)

    @contextlib.asynccontextmanager
    async def _with_outcomes(self, claim: bool = False) -> AsyncIterator[AsyncConnection]:
        """Inside a write turn: a writing transaction that also writes the outcomes waiting
        for a turn (``finish``), after what runs inside. Their ``done`` is settled once it
        commits, still in the turn; if it fails they are given back to their ``finish``.

        A claim takes none in a process that takes deliveries too (``_ingests``)."""
        taken: list[_Outcomes] = []
        if not (claim and self._ingests):
            taken, self._outcomes = self._outcomes, []
        try:
            async with self._db.engine.begin() as conn:
                yield conn
                for entry in taken:
                    entry.applied = await self._write_finished(conn, entry.worker_id, entry.results)
        except BaseException:
            self._outcomes[:0] = taken
            raise
        for entry in taken:
            entry.done.set_result(entry.applied)
        if taken and self._flow_plan is not None:
            self.wake_local()  # a finished flow-controlled execution frees a slot of its key

    async def ingest(self, batch: Sequence[records.NewEvent]) -> list[records.IngestResult]:
        self._ingests = True
        return await super().ingest(batch)

    async def close(self) -> None:
        self._wakeups.close()
        await super().close()
        self._writer_lock.close()

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_seconds: float, *,
        lost: bool | None = None,
    ) -> list[records.Claimed]:
        """Lease up to ``limit`` due executions to ``worker_id``, oldest due first.

        ``lost`` narrows the claim: False takes only executions never lost with a process
        (flow-controlled ones first, see ``_flow``), True only those lost before (the worker
        runs such a one alone), None any. An input that cannot be read carries ``input_error``.
        """
        flow = await self._claim_flow(worker_id, limit, now, lease_seconds, lost)
        limit -= len(flow)
        if limit <= 0:
            return flow
        stmt, params = _sqlite_claim.claim_statement(worker_id, limit, now, lease_seconds, lost)
        # In a worker process, outcomes waiting for a turn go in this transaction too.
        with _db.translating(), self._hand_off.claiming(worker_id, limit, lost):
            async with self._write_turn(False), self._with_outcomes(claim=True) as conn:
                claimed = (await conn.execute(stmt, params)).all()
                events = await _flow.events_by_id(
                    conn, {r.event_id for r in claimed if r.event_id is not None}
                )
        return flow + [
            _rows.claimed(r._mapping, events[r.event_id]._mapping if r.event_id in events else None)
            for r in claimed
        ]

    async def lost_due(self, now: datetime) -> bool:
        with self._hand_off.isolating():  # a lost execution runs alone: no hand-off meanwhile
            return await super().lost_due(now)

    async def finish(
        self, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        """Write attempts' outcomes in one transaction.

        Returns the results that took effect: a result whose lease this worker no longer holds
        (it expired and the execution was taken back) changes nothing but its attempt record.

        The outcomes wait for a background turn (after waiting ingests and claims: their
        handlers have started already). In a process that takes no deliveries (``solo-os
        worker``) they first wait up to ``OUTCOMES_LINGER`` for its next claim, which writes
        them in its own transaction (``_Outcomes``): one writing transaction fewer, and one
        fewer for ``serve``'s ingest to wait behind at the file lock.
        """
        if not results:
            return []
        entry = _Outcomes(worker_id, results, asyncio.get_running_loop().create_future())
        self._outcomes.append(entry)
        try:
            if not self._ingests:
                # Under load the next claim comes within milliseconds (each ingest commit wakes
                # the workers): leave them to it for a moment before taking a turn of their own.
                await asyncio.wait({entry.done}, timeout=OUTCOMES_LINGER)
                if entry.done.done():
                    return entry.done.result()
            with _db.translating():
                async with self._write_turn(background=True):
                    if entry in self._outcomes:  # no claim took them meanwhile
                        async with self._with_outcomes():
                            pass
        finally:
            if entry in self._outcomes:  # failed or cancelled before they were written
                self._outcomes.remove(entry)
        return entry.done.result()  # settled in the turn that wrote them

    async def _write_finished(
        self, conn: AsyncConnection, worker_id: str, results: Sequence[records.Finished]
    ) -> list[records.Finished]:
        now = utcnow()
        params = [
            {
                "b_worker": worker_id,
                "b_now": now,
                "b_id": r.execution_id,
                "b_attempt": r.attempt,
                "b_status": r.next_status,
                "b_run_after": r.run_after,
                "b_error": last_error(r),
                "b_result": r.result,
            }
            for r in results
        ]
        applied_ids = await self._apply_finished(conn, params, now)
        applied = [r for r in results if r.execution_id in applied_ids]
        await conn.execute(_ATTEMPTS_INSERT, _attempt_rows(worker_id, results))
        ended = [r for r in applied if r.next_status in _workflow.TERMINAL]
        if ended:  # children (ctx.invoke) that ended: their parents resume
            at_ = min(r.ended_at for r in ended)
            await _workflow.resume_parents(self._db, conn, [r.execution_id for r in ended], at_)
        if any(r.next_status == "pending" for r in applied):
            await self._db.notify(conn)
        return applied

    async def _apply_finished(
        self,
        conn: AsyncConnection,
        params: list[dict[str, Any]],
        now: datetime,
    ) -> set[UUID]:
        """Run the outcome updates; return the ids whose lease this worker still held."""
        res = await conn.execute(_FINISH_UPDATE, params)
        if res.rowcount == len(params):
            return {p["b_id"] for p in params}
        # Some leases were lost (their rows were not updated): find out which (rare path).
        held = await conn.execute(
            sa.select(ex.c.id).where(
                ex.c.id.in_([p["b_id"] for p in params]), ex.c.updated_at == now
            )
        )
        return {row.id for row in held}


@dataclasses.dataclass(eq=False)
class _Outcomes:
    """One ``finish`` call's outcomes, waiting for a write turn: its own, or a claim's of this
    process that comes first (``SQLiteStore._with_outcomes``)."""

    worker_id: str
    results: Sequence[records.Finished]
    done: asyncio.Future[list[records.Finished]]
    applied: list[records.Finished] = dataclasses.field(default_factory=list)


# The finish's statements, built once: they run in the writer's turn, where building them anew
# (and SQLAlchemy's cache key of a new statement) cost ~80 us each. An outcome's update applies
# to each execution its worker still leases (bound per result).
_FINISH_UPDATE = (
    sa.update(ex)
    .where(
        ex.c.id == sa.bindparam("b_id"),
        ex.c.worker_id == sa.bindparam("b_worker", type_=sa.String),
        ex.c.attempts == sa.bindparam("b_attempt"),
        ex.c.status == "running",
    )
    .values(
        status=sa.bindparam("b_status"),
        run_after=sa.func.coalesce(
            sa.bindparam("b_run_after", type_=_schema.UTCDateTime), ex.c.run_after
        ),
        last_error=sa.bindparam("b_error", type_=sa.Text),
        result=sa.bindparam("b_result", type_=sa.Text),
        lease_expires_at=None,
        worker_id=None,
        started_at=None,
        updated_at=sa.bindparam("b_now", type_=_schema.UTCDateTime),
    )
)
_ATTEMPTS_INSERT = sqlite.insert(at).on_conflict_do_nothing(index_elements=["execution_id", "attempt"])


def _attempt_rows(worker_id: str, results: Sequence[records.Finished]) -> list[dict[str, Any]]:
    return [
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
