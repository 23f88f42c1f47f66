-- The flow claim (store/_pg_flow.py): leases up to $2 due flow-controlled executions (flow_key
-- set) to worker $3 (lease until $4, now $1) within each concurrency key's limit, in claim
-- order ({ord}, then id: the received time, minus the priority when ordered by priority).
-- $5/$6 are the app's concurrency groups and their limits (a key's group is flow_key up to
-- chr(31)); a key whose group is not among them has no limit. The caller holds the flow
-- claim's advisory lock in this statement's transaction, taken before this statement's
-- snapshot: the running counts below are the executions table's, and no other flow claim
-- leases until this transaction commits. {{lost}} and {{lost_heads}} make one statement per
-- ``lost`` (store/_pg_sql.py): false takes only executions never lost with a process, and a key
-- whose due head was lost waits for it (FIFO per key); true only those lost before (the caller
-- asks for one: it runs alone); null any. Fixed in the text, not a parameter, so the planner
-- reads the windows through the index in claim order whatever plan it caches.
--
-- Fairness: candidates are read in windows of $7 in claim order, leaving out full keys and
-- keys whose earlier execution waits for its retry (FIFO per key). A second window also
-- leaves out the keys the first one already fills, so one busy key (many executions received
-- first) cannot fill the candidates and hold back the others. Each key's candidates are a
-- prefix of its due executions in claim order; each key takes as many as it has room for.
-- The second window is read only when the first cannot fill the claim. Returns the leased rows
-- with their event, in claim order, each with ``seen``: how many candidates the second window
-- held (fewer than $7 while the claim is not full: no due execution was left unread).
WITH running AS (
    SELECT flow_key, count(*) AS n FROM executions
    WHERE status = 'running' AND flow_key IS NOT NULL AND flow_key <> ''
    GROUP BY flow_key
), caps AS (
    SELECT scope, cap FROM unnest($5::text[], $6::int[]) AS c(scope, cap)
), busy AS (  -- running per key, looked up by key (no join whose size the planner misjudges)
    SELECT coalesce(jsonb_object_agg(flow_key, n), '{{}}'::jsonb) AS n FROM running
), shut AS (
    SELECT r.flow_key
    FROM running AS r JOIN caps AS c ON c.scope = split_part(r.flow_key, chr(31), 1)
    WHERE r.n >= c.cap
    UNION
    SELECT flow_key FROM executions
    WHERE status = 'pending' AND flow_key IS NOT NULL AND flow_key <> '' AND attempts > 0
      AND run_after > $1{lost_heads}
), w1 AS (
    SELECT e.id, e.flow_key, {ord} AS ord FROM executions AS e
    WHERE e.status = 'pending' AND e.flow_key IS NOT NULL AND e.run_after <= $1
      AND {lost}
      AND e.flow_key NOT IN (SELECT flow_key FROM shut)
    ORDER BY 3, 1
    LIMIT $7
), seen1 AS (  -- per key in w1: how many, and the room it has (null: no limit)
    SELECT w.flow_key, w.m,
           c.cap - coalesce(((SELECT n FROM busy) ->> w.flow_key)::int, 0) AS room
    FROM (SELECT flow_key, count(*) AS m FROM w1 GROUP BY flow_key) AS w
    LEFT JOIN caps AS c ON w.flow_key <> '' AND c.scope = split_part(w.flow_key, chr(31), 1)
), w2 AS (  -- read only when w1 cannot fill the claim
    SELECT e.id, e.flow_key, {ord} AS ord FROM executions AS e
    WHERE (SELECT coalesce(sum(least(m, coalesce(room, m))), 0) FROM seen1) < $2
      AND e.status = 'pending' AND e.flow_key IS NOT NULL AND e.run_after <= $1
      AND {lost}
      AND e.flow_key NOT IN (SELECT flow_key FROM shut)
      AND e.flow_key NOT IN (SELECT flow_key FROM seen1 WHERE m >= room)
    ORDER BY 3, 1
    LIMIT $7
), ranked AS (
    SELECT u.id, u.flow_key, u.ord,
           row_number() OVER (PARTITION BY u.flow_key ORDER BY u.ord, u.id) AS rn
    FROM (SELECT * FROM w1 UNION SELECT * FROM w2) AS u
), picked AS (
    SELECT k.id, k.ord
    FROM ranked AS k
    LEFT JOIN caps AS c ON k.flow_key <> '' AND c.scope = split_part(k.flow_key, chr(31), 1)
    WHERE c.cap IS NULL
       OR k.rn + coalesce(((SELECT n FROM busy) ->> k.flow_key)::int, 0) <= c.cap
    ORDER BY k.ord, k.id
    LIMIT $2
), upd AS (
    UPDATE executions AS e
    SET status = 'running', attempts = e.attempts + 1, worker_id = $3,
        lease_expires_at = $4, started_at = $1, updated_at = $1
    FROM picked WHERE e.id = picked.id AND e.status = 'pending'
    RETURNING e.id, e.event_id, e.handler, e.attempts, e.max_attempts, e.correlation_id,
              e.scheduled_at, e.trace_parent, e.losses, picked.ord
)
SELECT upd.*, ev.source, ev.type, ev.idempotency_key, ev.received_at,
       ev.headers::text AS headers, ev.payload::text AS payload,
       CASE WHEN ev.id IS NOT NULL AND ev.payload IS NULL THEN ev.body END AS body,
       (SELECT count(*) FROM w2) AS seen
FROM upd LEFT JOIN events AS ev ON ev.id = upd.event_id
ORDER BY upd.ord, upd.id
