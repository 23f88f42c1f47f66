-- Inserts the events that are new and the executions of the accepted ones among them, and resumes
-- the waits those events match, in one statement (foreign keys are checked at its end). Returns
-- a row per inserted event (inserted = true), and a row per conflicting delivery whose stored
-- event is accepted and was committed before this statement began (inserted = false, stored_id:
-- its answer is "duplicate"). The statement's snapshot does not see a row that a concurrent
-- batch committed while the insert waited for it: the caller reads those again
-- (store/_pg_ingest.py), and settles the rest (re-validated rejects) on the general path.
-- The two unnest(...) AS t(...) lists are made from the column lists in
-- solo_os/store/_pg_sql.py (placeholders in braces are filled in there, once, at import).
WITH ev_in AS (
    SELECT * FROM {events}
), ins AS (
    INSERT INTO events (id, source, idempotency_key, type, status, payload, body, headers,
                        errors, correlation_id, received_at, updated_at)
    SELECT id, source, idempotency_key, type, status, payload::jsonb, body, headers::jsonb,
           errors::jsonb, correlation_id, received_at, received_at
    FROM ev_in ORDER BY source, idempotency_key
    ON CONFLICT (source, idempotency_key) DO NOTHING
    RETURNING id, status, source, type, payload, received_at, correlation_id
), x_in AS (
    SELECT * FROM {executions}
), x_ins AS (
    INSERT INTO executions (id, event_id, handler, status, attempts, max_attempts, run_after,
                            correlation_id, trace_parent, created_at, updated_at)
    SELECT x.id, x.event_id, x.handler, 'pending', 0, x.max_attempts, ins.received_at,
           ins.correlation_id, x.trace_parent, ins.received_at, ins.received_at
    FROM x_in x JOIN ins ON ins.id = x.event_id AND ins.status = 'accepted'
    RETURNING 1
), resumed AS (
    -- Waiters of the new accepted events resume in this statement (migration 0008's function
    -- takes the shared wait lock of their (source, type) pairs, then reads the waits).
    SELECT solo_os_resume_waiters({locks}, array_agg(source), array_agg(type), array_agg(id),
                                  array_agg(payload), max(received_at)) AS n
    FROM ins WHERE status = 'accepted'
)
SELECT ins.id, true AS inserted, NULL::uuid AS stored_id,
       (SELECT count(*) FROM (SELECT pg_notify('{channel}', '') FROM x_ins LIMIT 1) AS n) AS woke,
       (SELECT n FROM resumed) AS resumed
FROM ins
UNION ALL
-- Repeats of accepted events, answered here rather than in a second round trip (an accepted
-- event never changes status, so no lock is needed). Only the deliveries not inserted are
-- looked up; the events table is read as of the statement's start, without the rows of ins.
SELECT ev_in.id, false, e.id, NULL, NULL
FROM ev_in
JOIN events AS e ON e.source = ev_in.source AND e.idempotency_key = ev_in.idempotency_key
WHERE e.status = 'accepted' AND NOT EXISTS (SELECT FROM ins WHERE ins.id = ev_in.id)
