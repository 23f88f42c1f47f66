"""A worker's outcomes cost SQLite the same however many finished executions the file holds.

Every batch of outcomes asks whether a child (``ctx.invoke``) among them ended, so that its
parent resumes. That look-up once joined the calls to the executions in one statement, and for a
batch of ~200 ids SQLite's planner walked the executions' status index over every finished
execution: the finish slowed as history grew (end to end at 500/s, the worker's share of it went
from 5% to 20% of its samples within one minute). Counted here in SQLite's own VM steps, which
do not depend on the machine's speed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from solo_os.store import _workflow, sqlite
from tests.store._sqlite_support import opened

BATCH = 200


async def _add_finished(s: sqlite.SQLiteStore, n: int) -> None:
    """``n`` more succeeded executions, as a worker leaves them."""
    async with s._db.write() as conn:
        await conn.execute(
            sa.text(
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < :n) "
                "INSERT INTO executions (id, handler, status, attempts, max_attempts, run_after, "
                "correlation_id, created_at, updated_at, losses) "
                "SELECT lower(hex(randomblob(16))), 'h', 'succeeded', 1, 3, :now, 'c', :now, :now, 0 "
                "FROM k"
            ),
            {"n": n, "now": datetime.now(UTC).replace(tzinfo=None)},
        )


async def _steps_of_one_batch(s: sqlite.SQLiteStore) -> int:
    """SQLite VM steps of the look-up for a batch of ``BATCH`` ended executions."""
    async with s._db.write() as conn:
        ids = [
            uuid.UUID(str(r[0]))
            for r in (
                await conn.execute(sa.text(f"SELECT id FROM executions ORDER BY rowid DESC LIMIT {BATCH}"))
            ).all()
        ]
        raw: Any = (await conn.get_raw_connection()).driver_connection
        steps = [0]

        def tick() -> int:
            steps[0] += 1
            return 0  # go on

        raw._conn.set_progress_handler(tick, 10)
        try:
            woke = await _workflow.resume_parents(s._db, conn, ids, datetime.now(UTC))
        finally:
            raw._conn.set_progress_handler(None, 10)
    assert woke is False  # none of them is anyone's child
    return steps[0] * 10


async def test_the_look_up_for_ended_children_does_not_grow_with_finished_history(
    sqlite_url: str,
) -> None:
    async with opened(sqlite_url) as s:
        await _add_finished(s, 1_000)
        small = await _steps_of_one_batch(s)
        await _add_finished(s, 30_000)
        large = await _steps_of_one_batch(s)
    # 31x the history; a key look-up per id costs a little more per level of the B-tree only
    assert large < 1.5 * small, (small, large)
