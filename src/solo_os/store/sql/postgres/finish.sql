-- Writes attempts' outcomes: updates each execution the worker still leases and records every
-- attempt. The unnest(...) AS t(...) list is made from the column list in
-- solo_os/store/_pg_sql.py, which fills in the placeholders in braces once, at import.
WITH r AS (
    SELECT * FROM {results}
), upd AS (
    UPDATE executions AS e SET
        status = r.status,
        run_after = COALESCE(r.run_after, e.run_after),
        last_error = r.error,
        lease_expires_at = NULL, worker_id = NULL, started_at = NULL,
        updated_at = {now}
    FROM r
    WHERE e.id = r.id AND e.worker_id = {worker} AND e.attempts = r.attempt AND e.status = 'running'
    RETURNING e.id, e.status, e.run_after
), att AS (
    INSERT INTO attempts (execution_id, attempt, worker_id, started_at, ended_at, outcome,
                          error_type, error_message, traceback)
    SELECT id, attempt, {worker}, started_at, ended_at, outcome, error_type, error_message,
           traceback
    FROM r
    ON CONFLICT (execution_id, attempt) DO NOTHING
)
SELECT upd.id,
       (SELECT count(*) FROM (
           SELECT pg_notify('{channel}', '') FROM upd
           WHERE upd.status = 'pending' AND upd.run_after <= {now} LIMIT 1) AS n) AS woke
FROM upd
