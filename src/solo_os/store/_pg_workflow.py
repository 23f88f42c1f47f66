"""Workflows on PostgreSQL: waits matched by the database, ``cancel_on`` at ingest.

The ingest statement (``sql/postgres/ingest.sql``) calls ``solo_os_resume_waiters`` (migration
0008) with its newly accepted events: the function takes each (source, type)'s wait lock shared,
then reads the waits on a fresh snapshot (a VOLATILE function's query), so a wait registered
before the lock was granted is seen; a wait's registration takes the lock exclusive before it
looks for earlier events, so an event whose statement holds the lock is seen by it. One of the
two always sees the other, and a batch without ``cancel_on`` rules is one statement. The keys
are the database's (``solo_os_wait_key``: an ``md5`` over the ``jsonb`` text of the values), on
the general path (``resume_waiters``) and at registration (``wait_key``) too.

Taking the lock inside the ingest statement itself would not do: a statement's snapshot is
taken before it runs, so a wait committed while it waited for the lock would stay invisible.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from solo_os.core import records
from solo_os.core import workflow as wf
from solo_os.store._pg_sql import CHANNEL

RESUME = (
    "SELECT solo_os_resume_waiters(CAST(:locks AS bigint[]), CAST(:sources AS text[]), "
    "CAST(:types AS text[]), CAST(:ids AS uuid[]), "
    "CAST(CAST(:payloads AS text[]) AS jsonb[]), :at)"
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


@functools.lru_cache(maxsize=4096)
def _lock_key(source: str, event_type: str) -> int:
    return wf.lock_key(source, event_type)


def lock_keys(batch: Sequence[records.NewEvent]) -> list[int]:
    """The wait locks of the (source, type) pairs of the accepted events of ``batch``: the
    ingest statement takes them shared (``solo_os_resume_waiters``, migration 0008)."""
    return sorted({_lock_key(e.source, e.type) for e in batch if e.status == "accepted"})


async def resume_waiters(
    conn: AsyncConnection, events: Sequence[records.NewEvent], now: datetime
) -> bool:
    """The general path's matching (SQLAlchemy): the same function as the ingest statement's,
    so the keys are the database's (``solo_os_wait_key``). True when a waiter resumed."""
    found = await conn.scalar(sa.text(RESUME), {
        "locks": lock_keys(events), "sources": [e.source for e in events],
        "types": [e.type for e in events], "ids": [e.id for e in events],
        "payloads": [e.payload for e in events], "at": now,
    })
    return bool(found)


def wait_key(match: Mapping[str, Any] | None, paths: str) -> sa.ColumnElement[str]:
    """A wait's ``match_key`` as the database computes it (registration)."""
    doc = sa.cast(sa.bindparam(None, json.dumps(dict(match or {})), type_=sa.Text), JSONB)
    return sa.func.solo_os_wait_key(doc, sa.bindparam(None, paths, type_=sa.Text), sa.false())


async def apply_cancels(
    conn: asyncpg.Connection, events: Sequence[records.NewEvent], now: datetime
) -> bool:
    """``cancel_on`` rules of newly accepted ``events``, in their ingest transaction; True when
    a parent resumed (a NOTIFY was sent)."""
    woke = False
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
