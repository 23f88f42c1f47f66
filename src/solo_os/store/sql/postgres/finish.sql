-- Writes attempts' outcomes: updates each execution the worker still leases and records every
-- attempt. The unnest(...) AS t(...) list is made from the column list in
-- solo_os/store/_pg_sql.py, which fills in the placeholders in braces once, at import. With
-- {flow} (the app has flow control), a finished flow-controlled execution frees a slot of its
-- key: every worker is woken (NOTIFY at commit), as for a retry due now.
WITH r AS (
    SELECT * FROM {results}
), upd AS (
    UPDATE executions AS e SET
        status = r.status,
        run_after = COALESCE(r.run_after, e.run_after),
        last_error = r.error,
        result = r.result::jsonb,
        lease_expires_at = NULL, worker_id = NULL, started_at = NULL,
        updated_at = {now}
    FROM r
    WHERE e.id = r.id AND e.worker_id = {worker} AND e.attempts = r.attempt AND e.status = 'running'
    RETURNING e.id, e.status, e.run_after, e.result, e.last_error, e.flow_key
), kids AS (
    -- A child (ctx.invoke) that ended settles its parent's call; the parent resumes.
    UPDATE workflow_calls AS w SET status = 'done', ended_at = r.ended_at,
        result = jsonb_build_object('status', upd.status, 'value', upd.result,
                                    'error', upd.last_error)
    FROM upd JOIN r ON r.id = upd.id
    WHERE w.child_id = upd.id AND w.status = 'waiting'
      AND upd.status IN ('succeeded', 'dead', 'cancelled')
    RETURNING w.execution_id, w.ended_at
), parents AS (
    UPDATE executions AS p SET status = 'pending', run_after = kids.ended_at, updated_at = {now}
    FROM kids WHERE p.id = kids.execution_id AND p.status = 'waiting'
    RETURNING p.id
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
           SELECT pg_notify('{channel}', '') FROM (
               SELECT 1 FROM upd WHERE upd.status = 'pending' AND upd.run_after <= {now}
               UNION ALL SELECT 1 FROM parents
               UNION ALL SELECT 1 FROM upd WHERE {flow} AND upd.flow_key IS NOT NULL
           ) AS due LIMIT 1) AS n) AS woke
FROM upd
