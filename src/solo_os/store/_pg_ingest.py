"""Repeated deliveries on PostgreSQL's hot path: answered by the ingest statement itself.

A delivery whose (source, key) conflicted is, nearly always, a provider's retry of an accepted
event: its answer is ``duplicate`` with the stored event's id, and nothing is written. The
ingest statement (``sql/postgres/ingest.sql``) returns those answers with the rows it
inserted, so a batch costs one round trip. An accepted event never changes status, so the read
needs no lock. What it cannot settle goes to the general, locking path
(``_ingest.IngestQueries``): a stored event that was rejected (the redelivery is judged again
by the current schema) and a row that is gone (purged since the insert met it).

The statement reads ``events`` as of its start. A key that a concurrent batch committed while
the insert waited for it conflicts, yet is not in that snapshot: ``duplicates`` reads those
again, as a statement of its own (in READ COMMITTED it sees every committed row).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from solo_os.core import records

DUPLICATES = """
SELECT t.id, e.id AS stored_id
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, source, idempotency_key)
JOIN events AS e ON e.source = t.source AND e.idempotency_key = t.idempotency_key
WHERE e.status = 'accepted'
"""

Answers = dict[UUID, records.IngestResult]


def statement_answers(rows: Sequence[asyncpg.Record]) -> tuple[set[UUID], Answers]:
    """The ingest statement's rows: the ids it inserted, and the ``duplicate`` answers by the
    delivery's id (``NewEvent.id``)."""
    inserted: set[UUID] = set()
    repeated: Answers = {}
    for r in rows:
        if r["inserted"]:
            inserted.add(r["id"])
        else:
            repeated[r["id"]] = records.IngestResult("duplicate", r["stored_id"])
    return inserted, repeated


async def duplicates(conn: asyncpg.Connection, items: Sequence[records.NewEvent]) -> Answers:
    """The ``duplicate`` answers of ``items`` whose stored event is accepted, by delivery id."""
    rows = await conn.fetch(
        DUPLICATES,
        [e.id for e in items],
        [e.source for e in items],
        [e.idempotency_key for e in items],
    )
    return {r["id"]: records.IngestResult("duplicate", r["stored_id"]) for r in rows}
