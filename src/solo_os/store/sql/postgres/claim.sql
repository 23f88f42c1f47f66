-- Leases up to $2 due executions to worker $3 (lease until $4, now $1), oldest due first; $5
-- narrows to executions lost before (true), never lost (false) or any (null). Returns each
-- with its event's stored input as text. Flow-controlled executions (flow_key set) are left to
-- the flow claim (store/_flow.py); this filter matches the partial index ix_executions_due.
WITH due AS (
    SELECT id FROM executions
    WHERE status = 'pending' AND flow_key IS NULL AND run_after <= $1 AND ($5::bool IS NULL OR (losses > 0) = $5)
    ORDER BY run_after
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE executions AS e
    SET status = 'running', attempts = e.attempts + 1, worker_id = $3,
        lease_expires_at = $4, started_at = $1, updated_at = $1
    FROM due WHERE e.id = due.id
    RETURNING e.id, e.event_id, e.handler, e.attempts, e.max_attempts, e.correlation_id,
              e.scheduled_at, e.trace_parent, e.losses
)
SELECT upd.*, ev.source, ev.type, ev.idempotency_key, ev.received_at,
       ev.headers::text AS headers, ev.payload::text AS payload,
       CASE WHEN ev.id IS NOT NULL AND ev.payload IS NULL THEN ev.body END AS body
FROM upd LEFT JOIN events AS ev ON ev.id = upd.event_id
