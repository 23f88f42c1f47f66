"""Waits matched inside PostgreSQL's ingest statement (issue 17): two SQL functions.

- ``solo_os_wait_key(doc, paths, nested)``: the index key of a wait (``workflow_calls.match_key``)
  computed by the database, an ``md5`` over the ``jsonb`` text of the values at the newline-separated
  ``paths`` (``nested``: dotted paths into an event's payload; else top-level keys of a wait's
  ``match``); NULL when a path is absent. Registration and ingest compute it the same way.
- ``solo_os_resume_waiters(...)``: called by the ingest statement with its newly accepted events;
  takes the shared wait lock of their (source, type) pairs, then (a VOLATILE function's next query
  runs on a fresh snapshot, taken after the lock) resumes the waits those events match. A wait's
  registration takes the same lock exclusive: one of the two always sees the other, and a batch
  costs one statement, with or without workflows.
- ``ix_workflow_calls_wait_key``: a hash index on the open waits' keys, what that function probes.

SQLite computes the keys in Python (``core.workflow``), so this migration changes nothing there.
Waits stored before it (keys computed in Python) are re-keyed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from solo_os.core import workflow as wf

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WAIT_KEY = r"""
CREATE OR REPLACE FUNCTION solo_os_wait_key(doc jsonb, paths text, nested boolean)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN count(*) = count(v) THEN md5(coalesce(string_agg(v, E'\n' ORDER BY n), '')) END
FROM (SELECT n, CASE WHEN nested THEN (doc #> string_to_array(p, '.'))::text
                     ELSE (doc -> p)::text END AS v
      FROM unnest(string_to_array(paths, E'\n')) WITH ORDINALITY AS u(p, n)) AS s
$$
"""

RESUME = r"""
CREATE OR REPLACE FUNCTION solo_os_resume_waiters(
    p_locks bigint[], p_sources text[], p_types text[], p_ids uuid[], p_payloads jsonb[],
    p_at timestamptz
) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    resumed integer;
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(k)
    FROM (SELECT DISTINCT unnest(p_locks) AS k) AS l ORDER BY k;
    -- From here on a fresh snapshot: a wait registered before the lock was granted is seen.
    WITH e AS MATERIALIZED (  -- each event's key under each path set of its (source, type)
        SELECT t.source, t.type, t.id, t.payload, t.n, m.match_paths,
               -- solo_os_wait_key, written out for the usual single path (a call costs ~10x)
               CASE WHEN m.match_paths = '' THEN md5('')
                    WHEN strpos(m.match_paths, E'\n') = 0 THEN
                        md5((t.payload #> string_to_array(m.match_paths, '.'))::text)
                    ELSE solo_os_wait_key(t.payload, m.match_paths, true) END AS match_key
        FROM unnest(p_sources, p_types, p_ids, p_payloads)
            WITH ORDINALITY AS t(source, type, id, payload, n)
        JOIN workflow_match_sets AS m ON m.source = t.source AND m.type = t.type
        WHERE t.payload IS NOT NULL
    ), k AS (  -- each matched wait with the first event of the batch that matches it
        SELECT DISTINCT ON (w.execution_id, w.name) w.execution_id, w.name, e.id, e.payload
        FROM e JOIN workflow_calls AS w
          ON w.match_key = e.match_key AND w.status = 'waiting' AND w.kind = 'wait'
         AND w.source = e.source AND w.type = e.type AND w.match_paths = e.match_paths
        ORDER BY w.execution_id, w.name, e.n
    ), w AS (
        UPDATE workflow_calls AS w SET status = 'done', result = k.payload, event_id = k.id,
            ended_at = p_at
        FROM k
        WHERE w.execution_id = k.execution_id AND w.name = k.name AND w.status = 'waiting'
        RETURNING w.execution_id
    ), x AS (
        UPDATE executions AS e SET status = 'pending', run_after = p_at, updated_at = p_at
        FROM (SELECT DISTINCT execution_id FROM w) AS d
        WHERE e.id = d.execution_id AND e.status = 'waiting'
        RETURNING 1
    )
    SELECT count(*) INTO resumed FROM x;
    IF resumed > 0 THEN
        PERFORM pg_notify('solo_os_work', '');
    END IF;
    RETURN resumed;
END
$$
"""

# A hash index probe is one bucket read, a text B-tree's a descent of collated comparisons:
# the ingest statement probes once per event (a ~0.3 ms difference per batch of 100).
KEY_INDEX = (
    "CREATE INDEX ix_workflow_calls_wait_key ON workflow_calls USING hash (match_key) "
    "WHERE status = 'waiting' AND kind = 'wait'"
)

REKEY = """
UPDATE workflow_calls SET match_key = solo_os_wait_key(match, match_paths, false)
WHERE kind = 'wait' AND status = 'waiting'
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(WAIT_KEY)
    op.execute(RESUME)
    op.execute(REKEY)
    op.execute(KEY_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_workflow_calls_wait_key")
    op.execute("DROP FUNCTION IF EXISTS solo_os_resume_waiters")
    op.execute("DROP FUNCTION IF EXISTS solo_os_wait_key")
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT execution_id, name, match::text AS match FROM workflow_calls "
        "WHERE kind = 'wait' AND status = 'waiting'"
    )).all()
    for r in rows:  # back to the keys computed in Python
        conn.execute(
            sa.text("UPDATE workflow_calls SET match_key = :k WHERE execution_id = :x AND name = :n"),
            {"k": wf.match_key(json.loads(r.match) if r.match else None), "x": r.execution_id,
             "n": r.name},
        )
