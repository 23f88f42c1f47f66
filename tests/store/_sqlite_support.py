"""SQLite stores for the tests of SQLite's own write paths (hand-off, outcomes with claims)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event as sa_event

from solo_os import store as store_mod
from solo_os.store import sqlite


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[sqlite.SQLiteStore]:
    """A started SQLite store on ``url``, closed on the way out."""
    s = store_mod.connect(url)
    assert isinstance(s, sqlite.SQLiteStore)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def count_commits(s: sqlite.SQLiteStore) -> list[int]:
    """A one-item list counting the commits of ``s`` from now on."""
    commits = [0]

    @sa_event.listens_for(s._db.engine.sync_engine, "commit")
    def _on_commit(_conn: Any) -> None:
        commits[0] += 1

    return commits
