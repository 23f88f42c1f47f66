"""SQLite's writing connection runs its transactions in place (``store/_sqlite_driver.py``):
the statements and the ``COMMIT`` run on the event loop's thread, with no trip between them
(the transaction holds the one writer of every process on the file), and so does ``BEGIN
IMMEDIATE`` while this process's turn holds the file lock (no other solo-os process can hold
the writer then). A ``BEGIN IMMEDIATE`` that another program's lock would make wait, and every
read, stay on the connection's thread. The file lock is let go at the ``COMMIT``."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os import errors
from solo_os.store import _sqlite_wake, sqlite
from tests.store._sqlite_support import opened


@pytest.fixture
async def lite(sqlite_url: str) -> AsyncIterator[sqlite.SQLiteStore]:
    async with opened(sqlite_url) as s:
        yield s


async def _traced(conn: AsyncConnection) -> list[tuple[str, int]]:
    """The statements SQLite runs on ``conn``'s connection from now on, with their thread."""
    seen: list[tuple[str, int]] = []
    raw: Any = (await conn.get_raw_connection()).driver_connection
    raw._conn.set_trace_callback(lambda sql: seen.append((sql.split()[0], threading.get_ident())))
    return seen


def _insert(name: str) -> sa.TextClause:
    return sa.text(
        "INSERT INTO workflow_match_sets (source, type, match_paths) VALUES ('s', :n, 'p')"
    ).bindparams(n=name)


async def test_a_writing_transactions_statements_and_commit_run_on_the_loops_thread(
    lite: sqlite.SQLiteStore,
) -> None:
    async with lite._db.write() as conn:  # the writer's one connection, traced from here on
        seen = await _traced(conn)
    seen.clear()
    async with lite._db.write() as conn:
        await conn.execute(_insert("a"))
        await conn.execute(sa.text("SELECT count(*) FROM workflow_match_sets"))
    loop_thread = threading.get_ident()
    run = [(s, t) for s, t in seen if s != "PRAGMA"]  # BEGIN's busy timeout, off and back on
    assert [s for s, _ in run] == ["BEGIN", "INSERT", "SELECT", "COMMIT"]
    assert all(t == loop_thread for _, t in run)  # BEGIN too: the turn holds the file lock
    assert await _busy_timeout(lite) == sqlite.BUSY_TIMEOUT_MS


async def _busy_timeout(store: sqlite.SQLiteStore) -> int:
    async with store._db.write() as conn:
        return int((await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar_one())


def _file_lock_free(url: str) -> bool:
    """Whether another process could take the file lock now (a second open file: flock is per
    open file, so this one competes as another process would)."""
    folder = _sqlite_wake.folder_for(sa.make_url(url).database)
    assert folder is not None
    fd = os.open(folder / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


async def test_the_file_lock_is_let_go_at_the_commit_before_the_turn_ends(
    lite: sqlite.SQLiteStore, sqlite_url: str
) -> None:
    seen: list[tuple[str, bool]] = []

    def on_checkin(*_: Any) -> None:  # after the COMMIT, still inside the turn
        seen.append(("checkin", _file_lock_free(sqlite_url)))

    sa.event.listen(lite._db.engine.sync_engine.pool, "checkin", on_checkin)
    async with lite._db.write() as conn:
        await conn.execute(_insert("a"))
        seen.append(("in the transaction", _file_lock_free(sqlite_url)))
    assert seen == [("in the transaction", False), ("checkin", True)]


async def test_a_begin_outside_a_turn_goes_to_the_connections_thread(
    lite: sqlite.SQLiteStore,
) -> None:
    lite._db.write_turn = None  # a writing transaction with no turn at the file lock
    async with lite._db.write() as conn:
        seen = await _traced(conn)
    seen.clear()
    async with lite._db.write() as conn:
        await conn.execute(_insert("a"))
    begin, *rest = seen
    assert begin[0] == "BEGIN" and begin[1] != threading.get_ident()
    assert [s for s, _ in rest] == ["INSERT", "COMMIT"]


async def test_reads_stay_on_the_connections_thread(lite: sqlite.SQLiteStore) -> None:
    async with lite._db.read() as conn:
        seen = await _traced(conn)
        await conn.execute(sa.text("SELECT count(*) FROM workflow_match_sets"))
    assert seen and all(t != threading.get_ident() for _, t in seen)


async def test_a_failed_statement_rolls_the_transaction_back_and_the_writer_goes_on(
    lite: sqlite.SQLiteStore,
) -> None:
    async def twice() -> None:
        async with lite._db.write() as conn:
            await conn.execute(_insert("kept-out"))
            await conn.execute(_insert("kept-out"))  # the primary key: IntegrityError

    with pytest.raises(errors.StoreError):
        await twice()
    async with lite._db.write() as conn:
        await conn.execute(_insert("b"))
    async with lite._db.read() as conn:
        names = (await conn.execute(sa.text("SELECT type FROM workflow_match_sets"))).scalars()
        assert list(names) == ["b"]


async def test_waiting_for_another_programs_write_lock_leaves_the_event_loop_free(
    sqlite_url: str,
) -> None:
    path = sa.make_url(sqlite_url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)  # holds SQLite's lock, not the file lock
    async with opened(sqlite_url) as s:
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())

        async def write() -> None:
            async with s._db.write() as conn:
                await conn.execute(_insert("after"))

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writing.done()
        assert ticks >= 10  # the loop ran while BEGIN IMMEDIATE waited
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
        ticker.cancel()
        # The busy timeout, off while BEGIN was tried in place, is back for what follows.
        assert await _busy_timeout(s) == sqlite.BUSY_TIMEOUT_MS
    other.close()
