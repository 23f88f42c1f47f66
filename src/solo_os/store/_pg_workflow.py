"""Workflow matching inside PostgreSQL's hot ingest transaction (asyncpg), as ``_workflow``
does it on the general path: resume the waiters of the new events, apply ``cancel_on``.

The ingest takes each (source, type)'s wait lock shared before it stores the events (a wait's
registration takes it exclusive), so under READ COMMITTED one of the two always sees the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from solo_os.core import records
from solo_os.core import workflow as wf
from solo_os.store import _workflow
from solo_os.store._pg_sql import CHANNEL

LOCK = (
    "SELECT pg_advisory_xact_lock_shared(k) FROM (SELECT DISTINCT unnest($1::bigint[]) AS k) AS t "
    "ORDER BY k"
)
RESOLVE = (
    """
WITH t AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                               $6::text[]) AS t(source, type, paths, key, event_id, payload)),
w AS (
    UPDATE workflow_calls AS w SET status = 'done', result = t.payload::jsonb,
        event_id = t.event_id, ended_at = $7
    FROM t
    WHERE w.status = 'waiting' AND w.kind = 'wait' AND w.source = t.source AND w.type = t.type
      AND w.match_paths = t.paths AND w.match_key = t.key
    RETURNING w.execution_id
), x AS (
    UPDATE executions AS e SET status = 'pending', run_after = $7, updated_at = $7
    FROM (SELECT DISTINCT execution_id FROM w) AS d
    WHERE e.id = d.execution_id AND e.status = 'waiting'
    RETURNING e.id
)
SELECT count(*) AS n, (SELECT count(*) FROM (SELECT pg_notify('{channel}', '')
                                             FROM x LIMIT 1) AS n) AS woke FROM x
""".replace("{channel}", CHANNEL)
)
OPEN = """
SELECT x.id, x.status, ev.payload::text AS payload FROM executions AS x
JOIN events AS ev ON ev.id = x.event_id
WHERE x.handler = $1 AND x.status IN ('pending', 'waiting', 'running') AND ev.id <> $2
"""
CANCEL = """
WITH r AS (
    INSERT INTO workflow_calls (execution_id, name, kind, status, event_id, created_at, ended_at)
    SELECT id, '', 'cancel', 'done', $2, $3, $3 FROM unnest($1::uuid[]) AS id
    ON CONFLICT DO NOTHING
)
UPDATE executions SET status = 'cancelled', last_error = 'cancelled by event ' || $2::text,
    updated_at = $3
WHERE id = ANY($1::uuid[]) AND status IN ('pending', 'waiting')
RETURNING id
"""
PARENTS = """
WITH k AS (
    SELECT w.execution_id, w.name, e.status, e.result, e.last_error FROM workflow_calls AS w
    JOIN executions AS e ON e.id = w.child_id
    WHERE w.child_id = ANY($1::uuid[]) AND w.status = 'waiting'
      AND e.status IN ('succeeded', 'dead', 'cancelled')
), w AS (
    UPDATE workflow_calls AS w SET status = 'done', ended_at = $2,
        result = jsonb_build_object('status', k.status, 'value', k.result, 'error', k.last_error)
    FROM k WHERE w.execution_id = k.execution_id AND w.name = k.name AND w.status = 'waiting'
    RETURNING w.execution_id
)
UPDATE executions AS e SET status = 'pending', run_after = $2, updated_at = $2
FROM w WHERE e.id = w.execution_id AND e.status = 'waiting'
RETURNING e.id
"""


async def lock(conn: asyncpg.Connection, batch: Sequence[records.NewEvent]) -> None:
    """Before the events are stored: the shared wait lock of each (source, type) they have."""
    keys = sorted({wf.lock_key(e.source, e.type) for e in batch if e.status == "accepted"})
    if keys:
        await conn.execute(LOCK, keys)


async def after_ingest(
    conn: asyncpg.Connection, events: Sequence[records.NewEvent], now: datetime,
    sets_json: str | None,
) -> bool:
    """Resume waiters of ``events`` (newly accepted) and apply their cancel rules; True when
    something became pending (a NOTIFY was sent). ``sets_json``: the path sets of open waits
    on their types, as the ingest statement read them (``wait_sets``)."""
    if not events:
        return False
    sets = json.loads(sets_json) if sets_json else []
    woke = False
    if sets:
        lookups = _workflow.plan(events, [(s[0], s[1], s[2]) for s in sets])
        if lookups:
            items = list(lookups.items())
            row = await conn.fetchrow(
                RESOLVE, *[[k[i] for k, _ in items] for i in range(4)],
                [e.id for _, e in items], [e.payload for _, e in items], now,
            )
            woke = bool(row and row["woke"])
    for event in events:
        for rule in event.cancels:
            cancelled = await _cancel(conn, event, rule, now)
            if cancelled:
                woke = bool(await conn.fetch(PARENTS, cancelled, now)) or woke
    return woke


async def _cancel(
    conn: asyncpg.Connection, event: records.NewEvent, rule: wf.CancelRule, now: datetime
) -> list[UUID]:
    ids: list[UUID] = []
    for r in await conn.fetch(OPEN, rule.handler, event.id):
        original: Any = json.loads(r["payload"]) if r["payload"] is not None else None
        if all(
            not wf.missing(v := wf.get_path(original, path)) and wf.canonical(v) == value
            for path, value in rule.pairs
        ):
            ids.append(r["id"])
    if not ids:
        return []
    rows = await conn.fetch(CANCEL, ids, event.id, now)
    return [r["id"] for r in rows]


async def resume_parents(conn: asyncpg.Connection, child_ids: Sequence[UUID], now: datetime) -> bool:
    """In the finish transaction: parents of children that ended resume."""
    if not child_ids:
        return False
    rows = await conn.fetch(PARENTS, list(child_ids), now)
    if rows:
        await conn.execute(f"NOTIFY {CHANNEL}")
    return bool(rows)
