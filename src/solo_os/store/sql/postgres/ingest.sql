-- Inserts the events that are new and the executions of the accepted ones among them, in one
-- statement (foreign keys are checked at its end, when both are in). Rows that conflict are not
-- returned; the caller settles them (duplicates, re-validated rejects) on the general path.
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
    RETURNING id, status
), x_in AS (
    SELECT * FROM {executions}
), x_ins AS (
    INSERT INTO executions (id, event_id, handler, status, attempts, max_attempts, run_after,
                            correlation_id, trace_parent, created_at, updated_at)
    SELECT x.id, x.event_id, x.handler, 'pending', 0, x.max_attempts, x.created_at,
           x.correlation_id, x.trace_parent, x.created_at, x.created_at
    FROM x_in x JOIN ins ON ins.id = x.event_id AND ins.status = 'accepted'
    RETURNING 1
)
SELECT ins.id,
       (SELECT count(*) FROM (SELECT pg_notify('{channel}', '') FROM x_ins LIMIT 1) AS n) AS woke,
       -- The path sets of open waits on the batch's (source, type) pairs (store/_pg_workflow.py;
       -- read after the wait lock the caller took, so a wait registered before is seen).
       (SELECT json_agg(json_build_array(m.source, m.type, m.match_paths))
        FROM workflow_match_sets AS m
        JOIN (SELECT DISTINCT source, type FROM ev_in WHERE status = 'accepted') AS p
          ON m.source = p.source AND m.type = p.type) AS wait_sets
FROM ins
