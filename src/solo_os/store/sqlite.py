"""The embedded store: one SQLite file in WAL mode, with a single writing connection.

SQLite allows one writer at a time. Writes go through one pooled connection that begins with
``BEGIN IMMEDIATE`` (so a read never has to upgrade to a write lock and deadlock); reads use a
second pool with plain ``BEGIN``, which WAL lets run beside the writer.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from solo_os.store import _base

BUSY_TIMEOUT_MS = 15_000


def _engine(url: str, begin: str, pool_size: int, busy_timeout_ms: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)

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


class SQLiteStore(_base.Store):
    dialect = "sqlite"

    def __init__(self, url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        super().__init__(
            _engine(url, "BEGIN IMMEDIATE", 1, busy_timeout_ms),
            _engine(url, "BEGIN", 4, busy_timeout_ms),
        )

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def _json_text(self, name: str) -> sa.ColumnElement[Any]:
        # SQLite keeps JSON as text: bind the text as it is.
        return sa.bindparam(name, type_=sa.Text)
