"""aiosqlite with fewer trips to its thread: one per statement instead of three or four.

aiosqlite runs every call on the connection's own thread and hands the result back through
the event loop; SQLAlchemy's adapter makes four such calls per statement (open a cursor,
execute, fetch the rows, close the cursor) and one more when a connection goes back to the
pool (a rollback that has nothing to roll back). Each trip waits for the event loop to come
round, so with the loop busy serving webhooks a write transaction of three statements spent
most of its ~4.5 ms in trips, and SQLite's one writer was busy all the time at 500
deliveries/s (receive-to-start p50 28 ms in ``solo-os run``).

Here a statement runs and its rows are read in one trip; opening and closing a cursor, which
touch no data, happen where they are called; and the rollback is skipped when no transaction
is open. Used through SQLAlchemy's ``async_creator_fn`` (``use_on``), with the arguments
SQLAlchemy would give ``aiosqlite.connect`` (its sqlite3 connections already allow use from
another thread: ``check_same_thread=False``). SQLAlchemy never uses one connection from two
places at once, so nothing here races with the connection's thread.

The writing connection goes further (``in_place``): once its ``BEGIN IMMEDIATE`` has returned
from the thread, the transaction's statements and its ``COMMIT`` run right here, on the event
loop's thread, with no trip at all. The transaction holds SQLite's one writer, which every
other transaction of every process on the file waits for, and its statements take ~0.1 ms
each while a trip waits for a busy event loop to come round: at 500 deliveries/s with
``serve`` and ``worker`` apart, a writing transaction held the writer 1.8-3.5 ms of which its
SQL and commit took 0.5-1.0 ms, and the writer was busy ~85% of the time (receive-to-start
p99 82.4 -> 56.5 ms, median of four pairs; ``solo-os run`` 46.3/43.3 -> 23.8/29.3 ms). Only
``BEGIN IMMEDIATE`` itself, which may wait for the lock (SQLite's busy wait), and statements
outside a transaction still go to the thread, so the event loop is never blocked waiting for
another writer.

Inside a turn at the file lock (``_sqlite_lock``) it goes further still. No other solo-os
process can hold SQLite's writer then, so ``BEGIN IMMEDIATE`` runs here as well, tried without
SQLite's busy wait (another program holding the writer sends it to the thread as before); and
the file lock is let go as soon as the ``COMMIT`` returns, not after SQLAlchemy has put the
connection back in its pool. At 500 deliveries/s with ``serve`` and ``worker`` apart, the trip
for ``BEGIN`` took 0.20-0.25 ms of each turn (p99 1.2 ms: the loop was busy) and the time from
the commit to the lock's release 0.19-0.29 ms, of turns that held the lock ~2-2.7 ms while it
was busy ~90% of the time.
"""

from __future__ import annotations

import collections
import functools
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

import aiosqlite
from aiosqlite.context import contextmanager
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class Turn(Protocol):
    """This process's turn at the file lock (``_sqlite_lock.WriterLock``)."""

    def held(self) -> bool:
        """A turn holds the file lock now."""
        ...

    def let_go(self) -> None:
        """The turn's transaction is over: let the other processes have the file lock."""
        ...


def use_on(engine: AsyncEngine, *, in_place: bool = False, turn: Turn | None = None) -> None:
    """Connect ``engine`` (``sqlite+aiosqlite``) through ``Connection`` below; ``in_place``: run
    what is inside a transaction on the calling thread (the writing connection), and with
    ``turn`` its ``BEGIN IMMEDIATE`` too while the turn holds the file lock."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _do_connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["async_creator_fn"] = functools.partial(connect, in_place=in_place, turn=turn)


def connect(
    database: str, *, in_place: bool = False, turn: Turn | None = None, **kwargs: Any
) -> Connection:
    return Connection(functools.partial(sqlite3.connect, database, **kwargs), 64, in_place, turn)


class Connection(aiosqlite.Connection):
    def __init__(
        self, connector: Any, iter_chunk_size: int, in_place: bool = False, turn: Turn | None = None
    ) -> None:
        super().__init__(connector, iter_chunk_size)
        self._thread.daemon = True  # as SQLAlchemy sets it on aiosqlite's own connections
        self._in_place = in_place
        self._turn = turn if in_place else None
        self._busy_timeout: int | None = None  # ms, read back from the connection once

    def in_place(self) -> bool:
        """Run the next call here: a writing transaction is open (it holds the write lock, so
        nothing in it waits for another writer)."""
        return self._in_place and self._connection is not None and self._connection.in_transaction

    def begin_here(self, cursor: sqlite3.Cursor, sql: str) -> bool:
        """Run ``BEGIN IMMEDIATE`` on this thread if this process's turn holds the file lock;
        False if it did not run (no turn, or another program holds SQLite's writer: the
        thread waits for it as before, with the connection's busy timeout)."""
        if self._turn is None or not self._turn.held() or sql != "BEGIN IMMEDIATE":
            return False
        conn = self._conn
        if self._busy_timeout is None:
            self._busy_timeout = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute(sql)
            return True
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout}")

    async def commit(self) -> None:
        if self.in_place():
            self._conn.commit()
            if self._turn is not None:
                self._turn.let_go()
        else:
            await super().commit()

    @contextmanager
    async def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self, self._conn.cursor())  # no data touched: here, not on the thread

    async def rollback(self) -> None:
        if self._connection is not None and not self._connection.in_transaction:
            return  # the pool's reset after a commit: nothing to roll back
        if self.in_place():
            self._conn.rollback()
        else:
            await super().rollback()


class Cursor(aiosqlite.Cursor):
    def __init__(self, conn: Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._owner = conn
        self._rows: collections.deque[Any] | None = None  # read with the statement

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Cursor:
        args = () if parameters is None else parameters
        if self._owner.in_place():
            self._rows = _run(self._cursor, sql, args)
        elif not args and self._owner.begin_here(self._cursor, sql):
            self._rows = collections.deque()
        else:
            self._rows = await self._execute(_run, self._cursor, sql, args)  # type: ignore[no-untyped-call]
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Cursor:
        self._rows = None
        if self._owner.in_place():
            rows: Any = parameters  # sqlite3's own type for them is narrower than aiosqlite's
            self._cursor.executemany(sql, rows)
        else:
            await super().executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        if self._rows is None:
            return await super().fetchone()
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Iterable[Any]:
        if self._rows is None:
            return await super().fetchmany(size)
        n = min(len(self._rows), self.arraysize if size is None else size)
        return [self._rows.popleft() for _ in range(n)]

    async def fetchall(self) -> Iterable[Any]:
        if self._rows is None:
            return await super().fetchall()
        rows, self._rows = list(self._rows), collections.deque()
        return rows

    async def close(self) -> None:
        self._rows = None
        self._cursor.close()  # resets the statement: no data touched


def _run(cursor: sqlite3.Cursor, sql: str, parameters: Any) -> collections.deque[Any]:
    """On the connection's thread: the statement, then all its rows (none for most writes)."""
    cursor.execute(sql, parameters)
    return collections.deque(cursor.fetchall() if cursor.description else ())
