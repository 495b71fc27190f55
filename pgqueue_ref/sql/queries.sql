-- Every statement pgqueue_ref sends, one source for every driver.
--
-- Each query starts with a "-- name: <name>" line; pgqueue_ref.sql loads them
-- into a dict. Parameters are written %(name)s, the style psycopg, psycopg2
-- and aiopg take as is; for asyncpg, pgqueue_ref.sql.to_numbered rewrites them
-- to $1, $2, ... Every parameter carries an explicit cast (::text[], ...) so
-- that every driver sends the same types, whatever it would have guessed.

-- Waking the workers. Every statement that makes jobs ready also calls, in
-- the same statement, pgqueue_wake(face, queue) (schema.sql), which sends
-- pg_notify('pgqueue_ref', '<face>:<queue>') when a worker of that queue
-- sleeps, LISTENing on that channel, and nothing when every worker is busy:
-- a NOTIFY serialises commits (schema.sql, docs/architecture.md "Wake-ups").
-- NOTIFY is transactional: it goes out when the inserting transaction
-- commits, never before and never after a rollback, and one notification
-- per distinct payload per transaction reaches each listener (PostgreSQL
-- folds repeats). It is sent here rather than by a trigger because a
-- trigger costs more than the insert it follows: a statement-level trigger
-- needs a transition table to learn which queues it touched, and that added
-- about 45 µs to every one-job defer, 15% of its time (docs/benchmarks.md).
-- Jobs inserted by hand with plain SQL wake no one; workers find them at
-- their next poll. A SELECT in a WITH clause runs only if the main query
-- reads it, hence the joins with `woken` below: count(pgqueue_wake(...))
-- makes it exactly one row, whether it notified or not, so the join keeps
-- every inserted row.

-- name: defer_jobs
-- One statement defers one job or ten thousand: each column arrives as one
-- array, and unnest() zips the arrays back into rows. The round trip and the
-- plan are paid once per batch, not once per job. Arguments arrive as JSON
-- text (the library serialises them) so no driver needs a JSON adapter.
-- A job without a schedule gets scheduled_at NULL: "as soon as possible".
WITH inserted AS (
    INSERT INTO pgqueue_jobs
        (face, queue, task_name, args, payload, priority, lock, queueing_lock, scheduled_at)
    SELECT %(face)s::text, queue, task_name, args::jsonb, payload, priority, lock, queueing_lock,
           coalesce(schedule_at, now() + make_interval(secs => schedule_in))
    FROM unnest(
        %(queues)s::text[],
        %(task_names)s::text[],
        %(args)s::text[],
        %(payloads)s::bytea[],
        %(priorities)s::integer[],
        %(locks)s::text[],
        %(queueing_locks)s::text[],
        %(schedule_ats)s::timestamptz[],
        %(schedule_ins)s::float8[]
    ) AS job(queue, task_name, args, payload, priority, lock, queueing_lock, schedule_at, schedule_in)
    RETURNING id, queue
), woken AS (
    SELECT count(pgqueue_wake(%(face)s::text, queue))
    FROM (SELECT DISTINCT queue FROM inserted) AS queues
)
SELECT id FROM inserted, woken;

-- name: defer_jobs_alike
-- The common batch: jobs that differ only in their arguments (batch_defer of
-- one task). The shared columns arrive once as plain values, and the
-- arguments as ONE JSON array, one element per job, in order: the client
-- joins the JSON texts it already has and sends one string, instead of
-- encoding a text[] of 10,000 elements (pure Python in psycopg), and the
-- server parses one jsonb instead of casting 10,000 texts. Measured: 1.55x
-- the jobs/s of a text[] on psycopg, 1.15x on asyncpg. All the jobs share
-- one queue, so one notification.
WITH inserted AS (
    INSERT INTO pgqueue_jobs
        (face, queue, task_name, args, payload, priority, lock, queueing_lock, scheduled_at)
    SELECT %(face)s::text, %(queue)s::text, %(task_name)s::text, job.args,
           %(payload)s::bytea, %(priority)s::integer, %(lock)s::text, %(queueing_lock)s::text,
           coalesce(%(schedule_at)s::timestamptz,
                    now() + make_interval(secs => %(schedule_in)s::float8))
    FROM jsonb_array_elements(%(args)s::jsonb) AS job(args)
    RETURNING id
), woken AS (
    SELECT count(pgqueue_wake(%(face)s::text, %(queue)s::text))
    WHERE EXISTS (SELECT FROM inserted)
)
SELECT id FROM inserted, woken;

-- name: defer_job
-- One job, the same columns as defer_jobs given as plain values. Deferring
-- one by one is the common case, and a one-row INSERT ... VALUES costs less
-- than unnest() over nine one-element arrays: about 40 µs less server time
-- per job, measured, and the client sends plain values instead of arrays.
-- (A function in FROM may read the FROM items before it, so pgqueue_wake
-- runs once, for the one row inserted.)
WITH inserted AS (
    INSERT INTO pgqueue_jobs
        (face, queue, task_name, args, payload, priority, lock, queueing_lock, scheduled_at)
    VALUES (
        %(face)s::text, %(queue)s::text, %(task_name)s::text, %(args)s::text::jsonb,
        %(payload)s::bytea, %(priority)s::integer, %(lock)s::text, %(queueing_lock)s::text,
        coalesce(%(schedule_at)s::timestamptz,
                 now() + make_interval(secs => %(schedule_in)s::float8))
    )
    RETURNING id, face, queue
)
SELECT id FROM inserted, pgqueue_wake(face, queue) AS woken;

-- name: fetch_jobs
-- Claim up to `limit` waiting jobs for one worker, in one round trip.
-- FOR UPDATE SKIP LOCKED is what makes a table a queue: rows another worker
-- is claiming right now are skipped instead of waited for, so workers never
-- block each other and never claim the same job. The claim (status 'doing',
-- our worker_id) commits with the statement, so a job is never held by an
-- open transaction while it runs.
-- A job with a lock waits while an earlier job with the same lock is waiting
-- or running: jobs sharing a lock run one at a time, in id order, even when
-- several workers fetch at once (the earlier job is 'todo' or 'doing' in
-- every concurrent snapshot until it finishes).
-- The claim does not wait for its WAL to reach the disk (synchronous_commit
-- off for this one transaction; set_config(..., true) is SET LOCAL): on a
-- stock server that wait is a disk flush, the largest part of the delay
-- between a defer and its job's start. Nothing is lost that the queue
-- promises: if the server crashes before the flush, the claim is undone and
-- the job is 'todo' again, so it runs again, as "at least once" allows.
-- Deferring and recording outcomes stay fully durable.
-- RETURNING gives rows in no particular order; the caller sorts them.
WITH no_flush_wait AS (
    SELECT set_config('synchronous_commit', 'off', true)
), candidates AS (
    SELECT id
    FROM pgqueue_jobs AS job
    WHERE status = 'todo'
      AND face = %(face)s::text
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND (%(task_names)s::text[] IS NULL OR task_name = ANY(%(task_names)s::text[]))
      AND (scheduled_at IS NULL OR scheduled_at <= now())
      AND (lock IS NULL OR NOT EXISTS (
            SELECT 1 FROM pgqueue_jobs AS earlier
            WHERE earlier.lock = job.lock
              AND earlier.status IN ('todo', 'doing')
              AND earlier.id < job.id))
    ORDER BY priority DESC, id
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE pgqueue_jobs AS job
SET status = 'doing',
    attempts = job.attempts + 1,
    worker_id = %(worker_id)s::bigint,
    started_at = now()
FROM candidates, no_flush_wait
WHERE job.id = candidates.id
RETURNING job.id, job.queue, job.task_name, job.args::text AS args, job.payload,
          job.priority, job.attempts, job.lock, job.queueing_lock,
          job.scheduled_at, job.created_at, job.headers::text AS headers;

-- name: finish_jobs
-- Every way out of 'doing', for a whole batch of jobs in one statement: the
-- worker buffers outcomes and flushes them together. Each row says the new
-- status; 'todo' means "run again" (a retry after retry_in seconds, or a job
-- handed back unstarted at shutdown, which also gives its attempt back).
-- The guards (still 'doing', still ours) leave alone a job that was handed
-- back meanwhile because this worker looked dead, and maybe claimed by another:
-- that worker's outcome is the one to record.
-- Retention (the worker's delete_jobs option): a job whose new status is in
-- delete_statuses is deleted instead of updated, in this same statement, so
-- keeping the table small costs no extra round trip. The worker never puts
-- 'todo' in delete_statuses: a job that will run again is never deleted.
-- The two data-modifying parts touch disjoint rows (a status is either in
-- the list or not), as one statement must: both see the same snapshot.
-- With delete_statuses empty (the default, 'never') the DELETE finds no row.
-- The guards are one CASE, which the planner can neither match to an index
-- nor estimate (it takes half the rows): it never believes that few rows
-- pass them, and joins the outcomes to the jobs by id (a hash join, or the
-- primary key). Estimated, they sank the flush twice, both times by a nested
-- loop that rescanned every outcome for each job held, a flush costing
-- (jobs held) x (outcomes):
-- * written `status = 'doing' AND worker_id = ...` they match the partial
--   index on worker_id; on a table never analysed the planner expected one
--   such job and walked all of them through it. A flush of 3,000 took 0.8 s;
--   with asyncpg's prepared statements (a generic plan after five runs) a
--   flush of 100 took 0.7-1 s while 20,000 jobs were claimed, and a drain of
--   50,000 never ended (tools/soak.py: 20,000 outcomes took 262 s);
-- * written `IS NOT DISTINCT FROM` (no index matches them), the statistics
--   of a table analysed while every job waited (no 'doing' row) still made
--   the planner expect one: a seq scan, then the rescans. The Queue face's
--   claims of 10 meet that case (a flush holds some 800 jobs): a flush of
--   740 took 130-180 ms, and the drain fell to 12k jobs/s. With the CASE:
--   2.3 ms. tests/test_engine_performance.py replays both cases.
WITH done AS (
    SELECT *
    FROM unnest(
        %(ids)s::bigint[],
        %(statuses)s::text[],
        %(errors)s::text[],
        %(retry_ins)s::float8[],
        %(handed_backs)s::boolean[]
    ) AS done(id, status, error, retry_in, handed_back)
), deleted AS (
    -- The cardinality test is a one-time filter: with nothing to delete (the
    -- default) this part runs no scan at all.
    DELETE FROM pgqueue_jobs AS job
    WHERE cardinality(%(delete_statuses)s::text[]) > 0
      AND job.id = ANY(ARRAY(
            SELECT id FROM done WHERE status = ANY(%(delete_statuses)s::text[])))
      AND CASE WHEN job.status = 'doing' AND job.worker_id = %(worker_id)s::bigint
               THEN true ELSE false END
    RETURNING job.id
), updated AS (
    UPDATE pgqueue_jobs AS job
    SET status = done.status,
        error = coalesce(done.error, job.error),
        attempts = job.attempts - CASE WHEN done.handed_back THEN 1 ELSE 0 END,
        scheduled_at = CASE WHEN done.status = 'todo'
                            THEN now() + make_interval(secs => done.retry_in)
                            ELSE job.scheduled_at END,
        started_at = CASE WHEN done.handed_back THEN NULL ELSE job.started_at END,
        finished_at = CASE WHEN done.status = 'todo' THEN NULL ELSE now() END,
        worker_id = NULL
    FROM done
    WHERE job.id = done.id
      AND NOT done.status = ANY(%(delete_statuses)s::text[])
      AND CASE WHEN job.status = 'doing' AND job.worker_id = %(worker_id)s::bigint
               THEN true ELSE false END
    RETURNING job.id
)
SELECT id FROM deleted
UNION ALL
SELECT id FROM updated;

-- name: release_orphaned_claims
-- After a database error a worker cannot know whether its last claim
-- committed before the connection died. If it did, those jobs are 'doing'
-- under this worker's id but in nobody's hands: hand back every job held
-- under our id that we do not hold (held: claimed, running, or with an
-- outcome waiting to be written), and give back their attempt.
UPDATE pgqueue_jobs
SET status = 'todo', worker_id = NULL, started_at = NULL, attempts = attempts - 1
WHERE worker_id = %(worker_id)s::bigint
  AND status = 'doing'
  AND NOT (id = ANY(%(held)s::bigint[]))
RETURNING id;

-- name: register_worker
INSERT INTO pgqueue_workers (name, session_tag)
VALUES (%(name)s::text, %(session_tag)s::text) RETURNING id;

-- name: heartbeat
-- No row back means another worker found us dead and took our jobs back.
UPDATE pgqueue_workers SET heartbeat_at = now() WHERE id = %(worker_id)s::bigint RETURNING id;

-- name: unregister_worker
DELETE FROM pgqueue_workers WHERE id = %(worker_id)s::bigint;

-- name: requeue_stalled_jobs
-- A worker whose heartbeat is older than `stalled_after` seconds is presumed
-- dead: fence it on the server, then delete its row and put its 'doing' jobs
-- (running or only fetched) back to 'todo' so another worker runs them. Their
-- attempt stays counted. A 'doing' job whose worker row is gone altogether is
-- handed back as well.
--
-- Why the server-side fence: a worker cut off by a partition has fenced itself
-- (stopped its jobs) by now, but a query it sent may still be on its way (held
-- in the network, retransmitted when it heals) or running in its backend, and
-- would commit whenever it gets there: after another worker started the job.
-- So first its backends (those carrying its `session_tag` as application_name)
-- are terminated, and pg_terminate_backend(pid, timeout) waits until each one
-- has exited: what they were doing committed before this statement, or never
-- will (bytes that arrive later find no backend). A worker with a backend that
-- did not exit in time keeps its row and its jobs until the next pass. Only
-- backends we may signal (a member of their role) are candidates.
-- MATERIALIZED keeps the terminations to exactly the rows found: no planner
-- may evaluate pg_terminate_backend on a backend before the join filters it.
WITH stale AS MATERIALIZED (
    SELECT id, session_tag FROM pgqueue_workers
    WHERE heartbeat_at < now() - make_interval(secs => %(stalled_after)s::float8)
),
victims AS MATERIALIZED (
    SELECT stale.id AS worker_id, activity.pid
    FROM stale JOIN pg_stat_activity AS activity
      ON activity.application_name = stale.session_tag
    WHERE activity.pid <> pg_backend_pid()
      AND pg_has_role(activity.usesysid, 'MEMBER')
),
struck AS MATERIALIZED (
    SELECT worker_id, pg_terminate_backend(pid, %(fence_timeout_ms)s::bigint) AS gone
    FROM victims
),
dead AS (
    DELETE FROM pgqueue_workers
    WHERE id IN (SELECT id FROM stale)
      AND id NOT IN (SELECT worker_id FROM struck WHERE NOT gone)
      -- Checked again on the row as it is now: a heartbeat that just got in wins.
      AND heartbeat_at < now() - make_interval(secs => %(stalled_after)s::float8)
    RETURNING id
)
UPDATE pgqueue_jobs AS job
SET status = 'todo', worker_id = NULL, started_at = NULL,
    error = 'requeued: its worker stopped sending heartbeats'
WHERE job.status = 'doing'
  AND (job.worker_id IN (SELECT id FROM dead)
       OR NOT EXISTS (SELECT 1 FROM pgqueue_workers AS w WHERE w.id = job.worker_id))
RETURNING job.id;

-- name: job_status
SELECT status FROM pgqueue_jobs WHERE id = %(id)s::bigint;

-- name: get_jobs
-- For people and tests: the newest jobs first, optionally of one queue (and,
-- for procrastinate's list_jobs filters, one id, task, status, lock,
-- queueing lock or worker: each NULL filter lets every row through).
SELECT id, face, queue, task_name, args::text AS args, payload, priority, status,
       attempts, lock, queueing_lock, error, scheduled_at, created_at, started_at, finished_at,
       abort_requested, worker_id
FROM pgqueue_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(id)s::bigint IS NULL OR id = %(id)s::bigint)
  AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(lock)s::text IS NULL OR lock = %(lock)s::text)
  AND (%(queueing_lock)s::text IS NULL OR queueing_lock = %(queueing_lock)s::text)
  AND (%(worker_id)s::bigint IS NULL OR worker_id = %(worker_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s::integer;

-- name: job_counts_by_queue
-- procrastinate's list_queues: per queue, how many jobs, and how many in each
-- status (FILTER counts them in the one pass over the rows GROUP BY makes).
SELECT queue AS name, count(*) AS jobs_count,
       count(*) FILTER (WHERE status = 'todo') AS todo,
       count(*) FILTER (WHERE status = 'doing') AS doing,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'aborted') AS aborted
FROM pgqueue_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(lock)s::text IS NULL OR lock = %(lock)s::text)
GROUP BY queue
ORDER BY queue;

-- name: job_counts_by_task
-- procrastinate's list_tasks: job_counts_by_queue, per task name instead.
SELECT task_name AS name, count(*) AS jobs_count,
       count(*) FILTER (WHERE status = 'todo') AS todo,
       count(*) FILTER (WHERE status = 'doing') AS doing,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'aborted') AS aborted
FROM pgqueue_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(lock)s::text IS NULL OR lock = %(lock)s::text)
GROUP BY task_name
ORDER BY task_name;

-- name: delete_waiting_job
-- procrastinate's cancel_job_by_id(delete_job=True): a waiting job is deleted
-- rather than kept as 'cancelled'. A running job is never deleted: it is
-- asked to abort instead (cancel_job, after this), as procrastinate does.
DELETE FROM pgqueue_jobs WHERE id = %(id)s::bigint AND status = 'todo' RETURNING id;

-- name: retry_failed_job
-- procrastinate's retry_job: a failed job waits again, at retry_at (NULL: as
-- soon as possible), with a new priority, queue or lock if given. Only
-- 'failed': a 'doing' job belongs to its worker, whose outcome would
-- overwrite ours. attempts stays: it counts claims, and the next claim
-- counts itself. The last error stays too, for the user. Like every insert,
-- it wakes the workers of its queue.
WITH retried AS (
    UPDATE pgqueue_jobs
    SET status = 'todo',
        scheduled_at = %(retry_at)s::timestamptz,
        priority = coalesce(%(priority)s::integer, priority),
        queue = coalesce(%(queue)s::text, queue),
        lock = coalesce(%(lock)s::text, lock),
        worker_id = NULL, abort_requested = false, started_at = NULL, finished_at = NULL
    WHERE id = %(id)s::bigint AND status = 'failed'
    RETURNING id, face, queue
)
SELECT id FROM retried, pgqueue_wake(face, queue) AS woken;

-- name: status_counts
SELECT face, queue, status, count(*) AS count
FROM pgqueue_jobs
GROUP BY face, queue, status
ORDER BY face, queue, status;

-- name: cancel_job
-- Only a waiting job can be cancelled outright; a running one is asked to
-- abort (abort=true) and its task sees the flag.
UPDATE pgqueue_jobs
SET status = CASE WHEN status = 'todo' THEN 'cancelled' ELSE status END,
    abort_requested = abort_requested OR (status = 'doing' AND %(abort)s::boolean),
    finished_at = CASE WHEN status = 'todo' THEN now() ELSE finished_at END
WHERE id = %(id)s::bigint AND status IN ('todo', 'doing')
RETURNING id, status;

-- name: delete_old_jobs
-- Retention (procrastinate's delete_old_jobs): delete finished jobs whose
-- finished_at is older than nb_hours, at most batch_size of them: the caller
-- loops until a batch comes back short. Small batches, each its own
-- transaction, hold their row locks briefly and spread the WAL, instead of
-- one DELETE of millions of rows that locks them all and writes its WAL in
-- one burst. Only the statuses given (succeeded, plus failed, cancelled,
-- aborted if asked) are candidates: 'todo' and 'doing' can never be.
-- finished_at is set by finish_jobs and cancel_job for every finished job.
-- There is no index on finished_at on purpose: every finished job would pay
-- for it, and a prune that runs now and then can afford a scan (which stops
-- after batch_size matches; the oldest jobs come first in the table).
-- SKIP LOCKED: two prunes at once share the work instead of waiting.
WITH deleted AS (
    DELETE FROM pgqueue_jobs
    WHERE id IN (
        SELECT id
        FROM pgqueue_jobs
        WHERE status = ANY(%(statuses)s::text[])
          AND status NOT IN ('todo', 'doing')  -- whatever the caller passes
          AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
          AND finished_at < now() - make_interval(secs => %(nb_hours)s::float8 * 3600)
        LIMIT %(batch_size)s::integer
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
)
SELECT count(*) AS deleted FROM deleted;

-- name: defer_periodic_job
-- A periodic deferrer (pgqueue_ref.periodic) defers one period of one
-- periodic task. Every worker runs a deferrer, so several send this for the
-- same period at about the same time: the period's row in
-- pgqueue_periodic_defers goes in for exactly one of them (ON CONFLICT DO
-- NOTHING on its primary key) and the job is inserted only FROM that row, in
-- the same statement, so the losers insert nothing and get no row back.
-- The job's id is drawn first (nextval of the jobs' identity, hence
-- OVERRIDING SYSTEM VALUE) so that the defers row can name its job: a CTE
-- cannot update a row another CTE of its statement inserted. A loser burns
-- one id, a harmless gap. A queueing lock held by a waiting job fails the
-- whole statement (AlreadyEnqueued), the period's row with it.
-- `pruned` deletes this task's rows older than max_delay before this period:
-- no deferrer goes that far back, so they can never conflict again.
WITH period AS (
    INSERT INTO pgqueue_periodic_defers (task_name, periodic_id, defer_timestamp, job_id)
    VALUES (%(task_name)s::text, %(periodic_id)s::text, %(defer_timestamp)s::bigint,
            nextval(pg_get_serial_sequence('pgqueue_jobs', 'id')))
    ON CONFLICT DO NOTHING
    RETURNING job_id
), inserted AS (
    INSERT INTO pgqueue_jobs (id, face, queue, task_name, args, priority, lock, queueing_lock)
    OVERRIDING SYSTEM VALUE
    SELECT job_id, 'app', %(queue)s::text, %(task_name)s::text, %(args)s::text::jsonb,
           %(priority)s::integer, %(lock)s::text, %(queueing_lock)s::text
    FROM period
    RETURNING id, queue
), pruned AS (
    DELETE FROM pgqueue_periodic_defers
    WHERE task_name = %(task_name)s::text
      AND periodic_id = %(periodic_id)s::text
      AND defer_timestamp < %(defer_timestamp)s::bigint - %(max_delay)s::bigint
      AND EXISTS (SELECT FROM period)
)
SELECT id FROM inserted, pgqueue_wake('app', queue) AS woken;

-- name: periodic_defers
-- For people and tests: the periods deferred, newest first.
SELECT task_name, periodic_id, defer_timestamp, job_id, deferred_at
FROM pgqueue_periodic_defers
ORDER BY defer_timestamp DESC, task_name, periodic_id
LIMIT %(limit)s::integer;

-- name: abort_requested
-- What a running task asks, now and then, when it may be told to stop.
SELECT abort_requested FROM pgqueue_jobs WHERE id = %(id)s::bigint;

-- name: missing_schema_objects
-- What `schema check` reports: every object the schema creates that is not here.
SELECT name
FROM unnest(ARRAY['pgqueue_jobs', 'pgqueue_workers', 'pgqueue_jobs_fetch_idx',
                  'pgqueue_jobs_queueing_lock_idx', 'pgqueue_jobs_lock_idx',
                  'pgqueue_jobs_worker_idx', 'pgqueue_periodic_defers',
                  'pgqueue_schedules', 'pgqueue_queue_log', 'pgqueue_watchers',
                  'pgqueue_listeners']) AS name
WHERE to_regclass(name) IS NULL;

-- ===========================================================================
-- The Queue face (PgQueuer's API): pgqueue_ref.queries.Queries.
-- Queue-face jobs have face 'queue', queue 'default', a bytes payload and no
-- JSON arguments; the entrypoint is task_name, the dedupe key queueing_lock.
-- ===========================================================================

-- name: enqueue_jobs
-- PgQueuer's enqueue: one job or a batch in one statement (unnest, as in
-- defer_jobs). WITH ORDINALITY + ORDER BY inserts the jobs in the caller's
-- order, so their ids ascend in that order.
-- Like every insert it wakes a consumer that sleeps on channel 'pgqueue_ref'
-- (pgqueue_wake, see the top of this file); a Queries object set to another
-- channel notifies that one too, every time: consumers there keep no marks.
WITH inserted AS (
    INSERT INTO pgqueue_jobs (face, task_name, payload, priority, queueing_lock, scheduled_at,
                              headers)
    SELECT %(face)s::text, task_name, payload, priority, queueing_lock,
           now() + make_interval(secs => schedule_in), header::jsonb
    FROM unnest(
        %(task_names)s::text[],
        %(payloads)s::bytea[],
        %(priorities)s::integer[],
        %(queueing_locks)s::text[],
        %(schedule_ins)s::float8[],
        %(headers)s::text[]
    ) WITH ORDINALITY
        AS job(task_name, payload, priority, queueing_lock, schedule_in, header, position)
    ORDER BY position
    RETURNING id, queueing_lock
), woken AS (
    SELECT count(pgqueue_wake(%(face)s::text, 'default'))
    WHERE EXISTS (SELECT FROM inserted)
), told AS (
    SELECT count(pg_notify(%(channel)s::text, %(face)s::text || ':default'))
    WHERE %(channel)s::text <> 'pgqueue_ref' AND EXISTS (SELECT FROM inserted)
)
SELECT id, queueing_lock FROM inserted, woken, told;

-- name: enqueue_job
-- enqueue_jobs for its common case, one job (an entrypoint given as a string)
-- that fails on a taken dedupe key: plain values instead of six one-element
-- arrays, as defer_job is to defer_jobs. The client encodes six scalars, not
-- six arrays, and the server skips unnest, WITH ORDINALITY and the sort.
-- The same wake-ups as enqueue_jobs; pgqueue_wake reads the inserted row, so
-- it runs once, for it (see defer_job).
WITH inserted AS (
    INSERT INTO pgqueue_jobs (face, task_name, payload, priority, queueing_lock, scheduled_at,
                              headers)
    VALUES (%(face)s::text, %(task_name)s::text, %(payload)s::bytea, %(priority)s::integer,
            %(queueing_lock)s::text, now() + make_interval(secs => %(schedule_in)s::float8),
            %(header)s::text::jsonb)
    RETURNING id, queueing_lock, face
), told AS (
    SELECT count(pg_notify(%(channel)s::text, %(face)s::text || ':default'))
    WHERE %(channel)s::text <> 'pgqueue_ref'
)
SELECT id, queueing_lock FROM inserted, pgqueue_wake(face, 'default') AS woken, told;

-- name: enqueue_jobs_skip_duplicates
-- enqueue_jobs with on_conflict="skip": a job whose dedupe key is taken by a
-- waiting job (or by an earlier job of the same batch) is left out instead of
-- failing the statement. The conflict target names the partial unique index
-- of sql/schema.sql (its column and its WHERE). The caller learns which jobs
-- were skipped from the dedupe keys that come back.
WITH inserted AS (
    INSERT INTO pgqueue_jobs (face, task_name, payload, priority, queueing_lock, scheduled_at,
                              headers)
    SELECT %(face)s::text, task_name, payload, priority, queueing_lock,
           now() + make_interval(secs => schedule_in), header::jsonb
    FROM unnest(
        %(task_names)s::text[],
        %(payloads)s::bytea[],
        %(priorities)s::integer[],
        %(queueing_locks)s::text[],
        %(schedule_ins)s::float8[],
        %(headers)s::text[]
    ) WITH ORDINALITY
        AS job(task_name, payload, priority, queueing_lock, schedule_in, header, position)
    ORDER BY position
    ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
    RETURNING id, queueing_lock
), woken AS (
    SELECT count(pgqueue_wake(%(face)s::text, 'default'))
    WHERE EXISTS (SELECT FROM inserted)
), told AS (
    SELECT count(pg_notify(%(channel)s::text, %(face)s::text || ':default'))
    WHERE %(channel)s::text <> 'pgqueue_ref' AND EXISTS (SELECT FROM inserted)
)
SELECT id, queueing_lock FROM inserted, woken, told;

-- name: queue_size
-- PgQueuer's queue_size: Queue-face jobs waiting ('todo') or running
-- ('doing'), counted per entrypoint, priority and status.
SELECT task_name AS entrypoint, priority, status, count(*) AS count
FROM pgqueue_jobs
WHERE face = 'queue' AND status IN ('todo', 'doing')
GROUP BY task_name, priority, status
ORDER BY task_name, priority DESC, status;

-- name: register_schedules
-- A consumer with @pgq.schedule callbacks makes their rows, once, when it
-- starts (PgQueuer's insert_schedule): rows already there are left as they
-- are, whoever made them.
INSERT INTO pgqueue_schedules (entrypoint, expression, next_run)
SELECT entrypoint, expression, next_run
FROM unnest(%(entrypoints)s::text[], %(expressions)s::text[], %(next_runs)s::timestamptz[])
    AS schedule(entrypoint, expression, next_run)
ON CONFLICT (entrypoint, expression) DO NOTHING;

-- name: claim_schedule
-- One period of one schedule fires on one consumer only: each consumer that
-- finds the period due moves last_run forward to it, and the WHERE lets only
-- a move forward through. Two consumers at once: the second waits for the
-- first's row lock, then re-reads the row (READ COMMITTED), finds last_run
-- already at this period, and updates nothing. No row back: not ours to run.
UPDATE pgqueue_schedules
SET last_run = %(period)s::timestamptz,
    next_run = %(next_run)s::timestamptz,
    status = 'picked',
    heartbeat = now(),
    updated = now()
WHERE entrypoint = %(entrypoint)s::text
  AND expression = %(expression)s::text
  AND (last_run IS NULL OR last_run < %(period)s::timestamptz)
RETURNING id, entrypoint, expression, heartbeat, created, updated, next_run, last_run, status;

-- name: release_schedule
-- The callback returned (or failed): the schedule waits for its next period.
UPDATE pgqueue_schedules
SET status = 'queued', heartbeat = now(), updated = now()
WHERE id = %(id)s::bigint;

-- name: list_schedules
-- PgQueuer's peek_schedule, and what `pgqueue-ref status` shows.
SELECT id, entrypoint, expression, heartbeat, created, updated, next_run, last_run, status
FROM pgqueue_schedules
ORDER BY entrypoint, expression;

-- name: notify_probe
-- A worker whose LISTEN is in place notifies itself on its channel, and counts
-- on hearing it within a second or two. Behind a transaction pooler (PgBouncer
-- in transaction mode) it never does: the LISTEN's server connection went back
-- to the pool when its statement ended, and NOTIFYs go to whoever holds it now.
SELECT pg_notify(%(channel)s, %(payload)s)::text AS sent

-- ===========================================================================
-- The Queue face's entrypoint limits, held failures and completion watching
-- (PgQueuer's entrypoint(concurrency_limit=, on_failure=), requeue_jobs,
-- list_failed_jobs and CompletionWatcher).
-- ===========================================================================

-- name: fetch_jobs_limited
-- fetch_jobs for a consumer with at least one entrypoint limited to N jobs
-- running at once across every consumer (limits: one per task name, 0 for
-- unlimited). Each job claimed for a limited entrypoint takes a free seat,
-- a slot number from 1 to N that no running job of it holds, and the
-- statement claims no more of that entrypoint than there are free seats.
-- That alone would overshoot when two consumers claim at once (each sees
-- the same free seats in its own snapshot); the unique index
-- pgqueue_jobs_slot_idx (schema.sql) makes the second of two claims that
-- chose the same seat fail instead, and its consumer claims again.
-- Unlimited entrypoints are claimed as fetch_jobs claims them, in the same
-- statement, and the batch as a whole keeps the order and the `limit`.
WITH no_flush_wait AS (
    SELECT set_config('synchronous_commit', 'off', true)
), entrypoints AS (
    SELECT task_name, concurrency_limit
    FROM unnest(%(task_names)s::text[], %(limits)s::integer[]) AS e(task_name, concurrency_limit)
), free_seats AS (
    SELECT e.task_name, seat.slot,
           row_number() OVER (PARTITION BY e.task_name ORDER BY seat.slot) AS rank
    FROM entrypoints AS e
    CROSS JOIN LATERAL generate_series(1, e.concurrency_limit) AS seat(slot)
    WHERE e.concurrency_limit > 0
      AND NOT EXISTS (
            SELECT 1 FROM pgqueue_jobs AS holder
            WHERE holder.status = 'doing'
              AND holder.face = %(face)s::text
              AND holder.task_name = e.task_name
              AND holder.slot = seat.slot
              AND holder.slot_started_at = holder.started_at)
), room AS (
    SELECT task_name, count(*)::integer AS seats FROM free_seats GROUP BY task_name
), unlimited AS (
    SELECT job.id, job.priority
    FROM pgqueue_jobs AS job
    WHERE job.status = 'todo'
      AND job.face = %(face)s::text
      AND job.task_name = ANY(ARRAY(SELECT task_name FROM entrypoints WHERE concurrency_limit <= 0))
      AND (%(queues)s::text[] IS NULL OR job.queue = ANY(%(queues)s::text[]))
      AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
      AND (job.lock IS NULL OR NOT EXISTS (
            SELECT 1 FROM pgqueue_jobs AS earlier
            WHERE earlier.lock = job.lock
              AND earlier.status IN ('todo', 'doing')
              AND earlier.id < job.id))
    ORDER BY job.priority DESC, job.id
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
), limited AS (
    -- At most as many of each limited entrypoint as it has free seats, ranked
    -- so that the first takes the first free seat, the second the second.
    SELECT picked.id, picked.priority, room.task_name,
           row_number() OVER (PARTITION BY room.task_name
                              ORDER BY picked.priority DESC, picked.id) AS rank
    FROM room
    CROSS JOIN LATERAL (
        SELECT job.id, job.priority
        FROM pgqueue_jobs AS job
        WHERE job.status = 'todo'
          AND job.face = %(face)s::text
          AND job.task_name = room.task_name
          AND (%(queues)s::text[] IS NULL OR job.queue = ANY(%(queues)s::text[]))
          AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
          AND (job.lock IS NULL OR NOT EXISTS (
                SELECT 1 FROM pgqueue_jobs AS earlier
                WHERE earlier.lock = job.lock
                  AND earlier.status IN ('todo', 'doing')
                  AND earlier.id < job.id))
        ORDER BY job.priority DESC, job.id
        LIMIT least(room.seats, %(limit)s::integer)
        FOR UPDATE SKIP LOCKED
    ) AS picked
), chosen AS (
    SELECT id, priority, NULL::integer AS slot FROM unlimited
    UNION ALL
    SELECT limited.id, limited.priority, free_seats.slot
    FROM limited
    JOIN free_seats ON free_seats.task_name = limited.task_name
                   AND free_seats.rank = limited.rank
    ORDER BY priority DESC, id
    LIMIT %(limit)s::integer
)
UPDATE pgqueue_jobs AS job
SET status = 'doing',
    attempts = job.attempts + 1,
    worker_id = %(worker_id)s::bigint,
    started_at = now(),
    slot = chosen.slot,
    slot_started_at = CASE WHEN chosen.slot IS NOT NULL THEN now() END
FROM chosen, no_flush_wait
WHERE job.id = chosen.id
RETURNING job.id, job.queue, job.task_name, job.args::text AS args, job.payload,
          job.priority, job.attempts, job.lock, job.queueing_lock,
          job.scheduled_at, job.created_at, job.headers::text AS headers;

-- name: requeue_failed_queue_jobs
-- PgQueuer's requeue_jobs(ids): Queue-face jobs that failed (held with
-- on_failure="hold", or kept because the consumer keeps finished jobs) wait
-- again, to run as soon as possible, with attempts back to 0 as PgQueuer
-- does. The last error stays, for the user, until the job finishes again.
-- Ids that are not failed Queue-face jobs are left alone. Like every
-- insert, it wakes the consumers.
WITH requeued AS (
    UPDATE pgqueue_jobs
    SET status = 'todo', scheduled_at = NULL, attempts = 0, worker_id = NULL,
        abort_requested = false, started_at = NULL, finished_at = NULL
    WHERE id = ANY(%(ids)s::bigint[]) AND face = 'queue' AND status = 'failed'
    RETURNING id
), woken AS (
    SELECT count(pgqueue_wake('queue', 'default'))
    WHERE EXISTS (SELECT FROM requeued)
), told AS (
    SELECT count(pg_notify(%(channel)s::text, 'queue:default'))
    WHERE %(channel)s::text <> 'pgqueue_ref' AND EXISTS (SELECT FROM requeued)
)
SELECT id FROM requeued, woken, told ORDER BY id;

-- name: list_failed_queue_jobs
-- PgQueuer's list_failed_jobs: failed Queue-face jobs with their error, the
-- newest first (or the oldest, ascending=true).
SELECT id, task_name AS entrypoint, priority, attempts, payload, error, created_at, finished_at
FROM pgqueue_jobs
WHERE face = 'queue' AND status = 'failed'
ORDER BY CASE WHEN %(ascending)s::boolean THEN id END ASC, id DESC
LIMIT %(limit)s::integer;

-- name: job_statuses
-- What a completion watcher looks at: its first look at each job it is
-- asked about (is there such a job?), and its safety net for notifications
-- it may have missed. An id with no row has none.
SELECT id, status FROM pgqueue_jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: announce_finished
-- Sent by a worker right after finish_jobs recorded outcomes, so that
-- completion watchers (pgqueue_ref.completion) learn them at once, on a
-- channel of their own (workers do not listen there). Each payload says how
-- up to 200 jobs ended, 'id:status,id:status,...' (a payload must stay under
-- 8000 bytes): only jobs finish_jobs wrote, so never the outcome of a job
-- handed to another worker meanwhile, and also the outcome of one it deleted
-- (delete_jobs), which has no row left to look at. It notifies only while a
-- watcher is registered (pgqueue_watchers, in schema.sql, says why).
SELECT count(pg_notify('pgqueue_ref_finished', payload)) AS sent
FROM unnest(%(payloads)s::text[]) AS payload
WHERE EXISTS (SELECT FROM pgqueue_watchers WHERE seen_at > now() - interval '1 minute');

-- name: register_watcher
-- A completion watcher, once its LISTEN is in place: from now on workers
-- announce. An outcome recorded before this commit is found by the watcher's
-- first look at the job, which comes after it.
INSERT INTO pgqueue_watchers DEFAULT VALUES RETURNING id;

-- name: touch_watcher
-- A watcher still listening (every WATCHER_TOUCH_EVERY seconds).
UPDATE pgqueue_watchers SET seen_at = now() WHERE id = %(id)s::bigint RETURNING id;

-- name: unregister_watcher
-- A watcher that stops listening; rows of watchers that died go stale instead.
DELETE FROM pgqueue_watchers
WHERE id = %(id)s::bigint OR seen_at < now() - interval '1 hour'
RETURNING id;

-- ===========================================================================
-- The dashboard and /metrics (pgqueue_ref.dashboard): what an operator looks
-- at. Read-only statements, each one pass over what it reads; the actions of
-- the dashboard (retry, cancel, abort) are retry_failed_job and cancel_job
-- above, the same statements the App face sends. Seconds between two moments
-- are date_part('epoch', ...), a float8: extract() returns numeric since
-- PostgreSQL 14, which made the duration histogram over a million jobs three
-- times slower (1.5 s instead of 0.5 s, here).
-- ===========================================================================

-- name: dashboard_counts
-- Every count the page shows, from one pass over the table: per queue, task
-- and status. The page adds them up per queue and per task, /metrics per queue
-- and status, so the three views always agree with each other.
SELECT queue, task_name, status, count(*) AS count
FROM pgqueue_jobs
GROUP BY queue, task_name, status
ORDER BY queue, task_name, status;

-- name: dashboard_jobs
-- The jobs the page lists: the newest first, narrowed by queue, task and
-- status (each NULL lets every row through). Unlike get_jobs it says who
-- holds a running job and whether it was asked to abort, and how long a
-- finished one ran, by the database's clock.
SELECT id, face, queue, task_name, args::text AS args, priority, status, attempts,
       worker_id, abort_requested, error, scheduled_at, created_at, started_at, finished_at,
       date_part('epoch', finished_at - started_at) AS duration
FROM pgqueue_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY id DESC
LIMIT %(limit)s::integer;

-- name: dashboard_scheduled_jobs
-- Jobs waiting for a moment still to come (deferred with schedule_in or
-- schedule_at, or waiting out a retry delay), the soonest first. The partial
-- fetch index holds only waiting jobs, so this reads none of the finished ones.
SELECT id, queue, task_name, args::text AS args, attempts, error, scheduled_at,
       date_part('epoch', scheduled_at - now()) AS due_in
FROM pgqueue_jobs
WHERE status = 'todo' AND scheduled_at > now()
ORDER BY scheduled_at, id
LIMIT %(limit)s::integer;

-- name: dashboard_periodic
-- The App face's periodic tasks live in code (@app.periodic); what the
-- database knows of them is the periods deferred. Per periodic task, the
-- last period deferred and the status of its job (NULL: the job was deleted).
SELECT DISTINCT ON (d.task_name, d.periodic_id)
       d.task_name, d.periodic_id, to_timestamp(d.defer_timestamp) AS period,
       d.deferred_at, d.job_id, job.status
FROM pgqueue_periodic_defers AS d
LEFT JOIN pgqueue_jobs AS job ON job.id = d.job_id
ORDER BY d.task_name, d.periodic_id, d.defer_timestamp DESC;

-- name: dashboard_workers
-- The workers registered, with the age of their last heartbeat by the
-- database's clock (the clock the requeue of stalled workers reads) and the
-- jobs each holds. A row stays until its worker stops or another worker finds
-- it silent for stalled_after seconds, so an old heartbeat is a worker that
-- died and has not been noticed yet.
SELECT w.id, w.name, w.started_at, w.heartbeat_at,
       date_part('epoch', now() - w.heartbeat_at) AS heartbeat_age,
       (SELECT count(*) FROM pgqueue_jobs AS job
        WHERE job.worker_id = w.id AND job.status = 'doing') AS running
FROM pgqueue_workers AS w
ORDER BY w.id;

-- name: dashboard_throughput
-- Jobs finished per time bucket over the last `buckets` buckets of `bucket`
-- seconds each, by outcome, empty buckets included (the generate_series),
-- for the chart. date_bin() cuts time into buckets aligned on the epoch, so
-- two refreshes agree on the buckets they share. Only finished_at is read:
-- jobs deleted when they finished (the worker's delete_jobs option) or
-- pruned since are not counted. No index on finished_at (see
-- delete_old_jobs), so this reads the table once.
WITH edges AS (
    SELECT make_interval(secs => %(bucket)s::float8) AS width,
           date_bin(make_interval(secs => %(bucket)s::float8), now(), 'epoch') AS last
), finished AS (
    SELECT date_bin(edges.width, job.finished_at, 'epoch') AS start, job.status
    FROM pgqueue_jobs AS job, edges
    WHERE job.finished_at >= edges.last - edges.width * (%(buckets)s::integer - 1)
      AND job.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
)
SELECT s.start, now() AS at,
       count(finished.status) FILTER (WHERE finished.status = 'succeeded') AS succeeded,
       count(finished.status) FILTER (WHERE finished.status = 'failed') AS failed,
       count(finished.status) FILTER (WHERE finished.status = 'cancelled') AS cancelled,
       count(finished.status) FILTER (WHERE finished.status = 'aborted') AS aborted
FROM edges,
     generate_series(edges.last - edges.width * (%(buckets)s::integer - 1), edges.last,
                     edges.width) AS s(start)
LEFT JOIN finished ON finished.start = s.start
GROUP BY s.start
ORDER BY s.start;

-- name: dashboard_figures
-- The single figures of /metrics, in one round trip: jobs finished in the
-- last `window` seconds by outcome (one pass, FILTER splitting it), the
-- workers alive (a heartbeat younger than `stalled_after` seconds), and the
-- age of the oldest job that is due and waits (NULL: none), counted from when
-- it became due; the waiting jobs are read through the partial fetch index.
WITH recent AS (
    SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE status = 'aborted') AS aborted
    FROM pgqueue_jobs
    WHERE finished_at >= now() - make_interval(secs => %(window)s::float8)
)
SELECT recent.*,
       (SELECT count(*) FROM pgqueue_workers
        WHERE heartbeat_at >= now() - make_interval(secs => %(stalled_after)s::float8))
           AS live_workers,
       (SELECT date_part('epoch', now() - min(coalesce(scheduled_at, created_at)))
        FROM pgqueue_jobs
        WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now()))
           AS oldest_waiting_age,
       now() AS at
FROM recent;

-- name: dashboard_durations
-- The job duration histogram of /metrics: per bucket, how many finished jobs
-- took that long and their total seconds, from claim to finish. Bucket i holds
-- the durations above bounds[i - 1] and at most bounds[i] (Prometheus' `le`);
-- bucket n, past the n bounds, the longer ones (+Inf). i is the number of
-- bounds below the duration: width_bucket() counts those at or below it, so
-- one equal to it is taken back off. Over every job the table still holds
-- that ran and finished, so the histogram only grows, as Prometheus expects
-- of one, until jobs are deleted (which it takes for a counter reset).
SELECT width_bucket(d.seconds, %(bounds)s::float8[]) - (d.seconds = ANY(%(bounds)s::float8[]))::int
           AS bucket,
       count(*) AS count, sum(d.seconds) AS seconds
FROM (SELECT date_part('epoch', finished_at - started_at) AS seconds
      FROM pgqueue_jobs
      WHERE status IN ('succeeded', 'failed', 'aborted')
        AND started_at IS NOT NULL AND finished_at IS NOT NULL) AS d
GROUP BY 1
ORDER BY 1;

-- name: dashboard_database
-- What the page's header names: the database as the server sees it, so that
-- no DSN (and no password in one) is ever shown. inet_server_addr() is NULL
-- over a Unix socket.
SELECT current_user AS "user", current_database() AS dbname,
       host(inet_server_addr()) AS host, inet_server_port() AS port,
       current_setting('server_version') AS server_version;

-- ===========================================================================
-- PgQueuer's queue maintenance, log and statistics (Queries.clear_queue,
-- queue_log, log_statistics...; issue 21). The log is the view
-- pgqueue_queue_log of sql/schema.sql: read from the jobs, never written.
-- ===========================================================================

-- name: clear_queue
-- PgQueuer's clear_queue: delete the Queue-face jobs that wait or run, of the
-- given entrypoints or (NULL) of all. Finished jobs are the log, and stay;
-- App-face jobs are never touched. A running job's consumer then finds its
-- row gone and records nothing.
DELETE FROM pgqueue_jobs
WHERE face = 'queue' AND status IN ('todo', 'doing')
  AND (%(entrypoints)s::text[] IS NULL OR task_name = ANY(%(entrypoints)s::text[]));

-- name: clear_queue_log
-- PgQueuer's clear_queue_log and clear_statistics_log: both are read from the
-- finished Queue-face jobs, so clearing either deletes those jobs (never a
-- waiting or running one), of the given entrypoints or (NULL) of all.
DELETE FROM pgqueue_jobs
WHERE face = 'queue' AND status IN ('succeeded', 'failed', 'cancelled', 'aborted')
  AND (%(entrypoints)s::text[] IS NULL OR task_name = ANY(%(entrypoints)s::text[]));

-- name: queue_log
-- PgQueuer's queue_log: every transition of every Queue-face job, oldest first.
SELECT created, job_id, status, priority, entrypoint, traceback
FROM pgqueue_queue_log
ORDER BY created, job_id, status DESC;

-- name: job_log_history
-- PgQueuer's job_log_history: one job's transitions, oldest first.
SELECT created, job_id, status, priority, entrypoint, traceback
FROM pgqueue_queue_log
WHERE job_id = %(id)s::bigint
ORDER BY created, status DESC
LIMIT %(limit)s::integer;

-- name: log_statistics
-- PgQueuer's log_statistics: the log counted per second, entrypoint,
-- priority and status, newest first; `last` (seconds, NULL: all) keeps the
-- recent ones, `limit` (NULL: all) the first so many. PgQueuer folds its log
-- into a statistics table first (aggregate_logs); here the count is always
-- current, so there is nothing to fold.
SELECT count(*)::bigint AS count, date_trunc('second', created) AS created,
       entrypoint, priority, status
FROM pgqueue_queue_log
WHERE %(last)s::float8 IS NULL OR created > now() - make_interval(secs => %(last)s::float8)
GROUP BY date_trunc('second', created), entrypoint, priority, status
ORDER BY created DESC, entrypoint, priority DESC, status
LIMIT %(limit)s::integer;

-- ===========================================================================
-- Retention: what the jobs table costs (pgqueue_ref.table_stats)
-- ===========================================================================

-- name: jobs_table_stats
-- The jobs table on disk, and what PostgreSQL's statistics say of its rows.
-- pg_total_relation_size counts the heap, every index and TOAST: the figure a
-- disk fills with. Deleting a row frees nothing at once: it stays as a dead
-- tuple (still on disk, in the heap and in every index) until VACUUM (or
-- autovacuum) marks its space reusable; even then the file does not shrink,
-- except for empty pages at its end, but later inserts fill the holes. The
-- row counts are the statistics' estimates (n_live_tup, n_dead_tup): each
-- backend reports about once a second while busy, up to 10 s after it goes
-- idle, or when it ends. The LEFT JOIN and coalesce are for a table without
-- statistics yet.
SELECT pg_total_relation_size(c.oid) AS total_bytes,
       pg_relation_size(c.oid) AS heap_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       coalesce(s.n_live_tup, 0) AS live_rows,
       coalesce(s.n_dead_tup, 0) AS dead_rows,
       coalesce(s.vacuum_count, 0) AS vacuums,
       coalesce(s.autovacuum_count, 0) AS autovacuums,
       s.last_autovacuum,
       EXISTS (SELECT FROM pg_stat_progress_vacuum AS p WHERE p.relid = c.oid) AS vacuum_running
FROM pg_class AS c
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.oid = 'pgqueue_jobs'::regclass;

-- name: heartbeat_schedule
-- While a schedule's callback runs (status 'picked'), its consumer says so
-- every few seconds, as PgQueuer does: `pgqueue-ref status` (and whoever
-- reads the table) can tell a long callback from a consumer that died in one.
UPDATE pgqueue_schedules
SET heartbeat = now()
WHERE id = %(id)s::bigint AND status = 'picked';
-- Wake-ups of the App face: NOTIFY only while a worker sleeps (issue 17).
-- The protocol, and why no wake-up is lost: schema.sql (pgqueue_wake) and
-- docs/architecture.md, "Wake-ups".
-- ===========================================================================

-- name: go_idle
-- A worker that found nothing to claim marks itself idle, then tries the
-- wake lock in EXCLUSIVE mode without waiting, in the same transaction.
-- settled = true: no defer held the lock, so every defer that read the flags
-- before this commit has committed its job, and the worker's next claim
-- sees it; every defer after this commit sees the flag and notifies. Only
-- then may the worker sleep until a NOTIFY (after that one more claim).
-- settled = false: a defer was between its read of the flags and its
-- commit; it may have read them without ours: look again soon instead.
-- No row: our worker row is gone (we were presumed dead): do not sleep on it.
-- Never a wait: a defer in a long transaction holds the lock SHARED until it
-- commits, and an EXCLUSIVE request that waited would queue every later
-- defer behind it. Losing this row in a crash only costs a poll.
WITH no_flush_wait AS (
    SELECT set_config('synchronous_commit', 'off', true)
), flag AS (
    INSERT INTO pgqueue_listeners (worker_id, face, queues, idle)
    SELECT %(worker_id)s::bigint, %(face)s::text, %(queues)s::text[], true
    FROM no_flush_wait
    WHERE EXISTS (SELECT FROM pgqueue_workers WHERE id = %(worker_id)s::bigint)
    ON CONFLICT (worker_id) DO UPDATE
        SET idle = true, face = excluded.face, queues = excluded.queues
    RETURNING worker_id
)
SELECT pg_try_advisory_xact_lock(1885827442, 1) AS settled FROM flag;

-- name: worker_busy
-- A claim brought jobs: defers need not wake this worker any more. An update
-- of a column no index holds: HOT, and no flush wait (losing it costs one
-- needless NOTIFY).
WITH no_flush_wait AS (
    SELECT set_config('synchronous_commit', 'off', true)
)
UPDATE pgqueue_listeners SET idle = false
FROM no_flush_wait
WHERE worker_id = %(worker_id)s::bigint AND idle;
