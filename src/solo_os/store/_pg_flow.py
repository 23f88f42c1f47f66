"""The flow claim on PostgreSQL's hot path (SPEC section 7): concurrency per key, FIFO per key,
fairness across keys and priority in one statement (``sql/postgres/flow_claim.sql``) over
asyncpg, like the plain claim.

The statement runs in a transaction that first takes the flow claim's advisory lock (the one
``_flow.FlowQueries.claim`` takes, so both paths exclude each other) in a statement of its
own, sent with ``BEGIN`` in one round trip: under READ COMMITTED the claim's snapshot is
taken after the lock is granted, so it counts every execution an earlier claim leased, and no
two claims hand out the same slot. Running counts are read from the executions table itself.
A plan with a throttle or a batch keeps the general claim (``_flow``): the sliding windows and
the batch items are read there.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import asyncpg

from solo_os.core import flow as flow_core
from solo_os.core import records
from solo_os.store import _flow, _pg_sql, _rows

ROUNDS = 2  # statements per claim at most (each reads two windows; see flow_claim.sql)


def handles(plan: flow_core.Plan) -> bool:
    """Whether this plan's claim is the one statement (no throttle, no batch)."""
    return not plan.throttles and not plan.batch


async def claim(
    conn: asyncpg.Connection, lock_id: int, plan: flow_core.Plan, worker_id: str, limit: int,
    now: datetime, lease_seconds: float, lost: bool | None = False,
) -> list[records.Claimed]:
    """Lease up to ``limit`` due flow-controlled executions within every concurrency limit;
    ``lost`` as in ``_flow.FlowQueries.claim`` (True: at most one lost before, run alone)."""
    limit = min(limit, 1) if lost else limit
    sql = _pg_sql.FLOW_CLAIMS[bool(plan.priority), lost]
    groups = sorted(plan.limits)
    caps = [plan.limits[g] for g in groups]
    until = now + timedelta(seconds=lease_seconds)
    size = limit * _flow.WINDOW + 8
    out: list[records.Claimed] = []
    # BEGIN, the plan mode and the lock in one round trip (the simple query protocol runs them
    # in order); asyncpg rolls back a transaction left open when the connection goes back to
    # the pool. The statement's generic plan is the custom one (its windows' filters are fixed
    # in the text), and PostgreSQL would plan it anew at every claim (~0.4 ms of the claim's
    # server time): ``force_generic_plan``, for this transaction only, reuses the first plan.
    await conn.execute(
        "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; "
        f"SELECT pg_advisory_xact_lock({int(lock_id)})"
    )
    try:
        for _ in range(ROUNDS):
            rows = await conn.fetch(
                sql, now, limit - len(out), worker_id, until, groups, caps, size
            )
            out += [_rows.claimed(r, r) for r in rows]  # event columns are null for cron runs
            if not rows or len(out) >= limit or rows[0]["seen"] < size:
                break
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    return out
