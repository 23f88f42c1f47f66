"""What the queue tests read back from the store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


async def figures(store: Any, source: str) -> dict[str, Any]:
    """Per source: accepted/rejected events, their distinct keys, executions by status."""
    async with store._engine.connect() as conn:
        events = (await conn.execute(sa.text(
            "SELECT status, count(*), count(DISTINCT idempotency_key) FROM events"
            " WHERE source = :s GROUP BY status"), {"s": source})).all()
        runs = (await conn.execute(sa.text(
            "SELECT x.status, count(*), max(x.attempts) FROM executions x JOIN events e"
            " ON x.event_id = e.id WHERE e.source = :s GROUP BY x.status"), {"s": source})).all()
        per_event = await conn.scalar(sa.text(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM executions x JOIN events e"
            " ON x.event_id = e.id WHERE e.source = :s GROUP BY x.event_id) AS t"), {"s": source})
    return {
        "events": {r[0]: r[1] for r in events},
        "distinct": {r[0]: r[2] for r in events},
        "executions": {r[0]: r[1] for r in runs},
        "max_attempts": max((r[2] for r in runs), default=0),
        "max_executions_per_event": per_event or 0,
    }


async def keys(store: Any, source: str, status: str = "accepted") -> set[str]:
    async with store._engine.connect() as conn:
        rows = await conn.execute(sa.text(
            "SELECT idempotency_key FROM events WHERE source = :s AND status = :st"),
            {"s": source, "st": status})
        return {r[0] for r in rows}
