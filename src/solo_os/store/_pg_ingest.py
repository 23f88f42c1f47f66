"""Repeated deliveries on PostgreSQL's hot path: one read, no transaction, no SQLAlchemy.

The ingest statement (``sql/postgres/ingest.sql``) returns only the rows it inserted. A
delivery whose (source, key) conflicted is, nearly always, a provider's retry of an accepted
event: its answer is ``duplicate`` with the stored event's id, and nothing is written. That is
read here in one statement over the conflicting keys. An accepted event never changes status,
so the read needs no lock. What it cannot settle goes to the general, locking path
(``_ingest.IngestQueries``): a stored event that was rejected (the redelivery is judged
again by the current schema) and a row that is gone (purged since the insert met it).

The read runs after the ingest statement, as its own statement: in READ COMMITTED it sees
every row the insert conflicted with, including one that a concurrent batch committed while
the insert waited for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from solo_os.core import records

DUPLICATES = """
SELECT e.id, e.source, e.idempotency_key
FROM unnest($1::text[], $2::text[]) AS t(source, idempotency_key)
JOIN events AS e ON e.source = t.source AND e.idempotency_key = t.idempotency_key
WHERE e.status = 'accepted'
"""


async def duplicates(
    conn: asyncpg.Connection, items: Sequence[records.NewEvent]
) -> dict[tuple[str, str], records.IngestResult]:
    """The ``duplicate`` answers of ``items`` whose stored event is accepted, by (source, key)."""
    rows = await conn.fetch(
        DUPLICATES, [e.source for e in items], [e.idempotency_key for e in items]
    )
    return {
        (r["source"], r["idempotency_key"]): records.IngestResult("duplicate", r["id"])
        for r in rows
    }
