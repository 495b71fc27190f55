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
          job.scheduled_at, job.created_at;

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
-- The guards say IS NOT DISTINCT FROM where = would do (status is NOT NULL,
-- the worker id given): so written, they cannot use the partial index on
-- worker_id, and each row is found by its id. With `=`, on a table never
-- analysed the planner expected one 'doing' job of this worker, walked all
-- of them through that index and, for each, rescanned the outcomes: every
-- flush cost (jobs held) x (outcomes). A flush of 3,000 took 0.8 s; with
-- asyncpg's prepared statements (a generic plan after five runs) a flush of
-- 100 took 0.7-1 s while 20,000 jobs were claimed, and a drain of 50,000
-- never ended.
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
      AND job.status IS NOT DISTINCT FROM 'doing'
      AND job.worker_id IS NOT DISTINCT FROM %(worker_id)s::bigint
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
      AND job.status IS NOT DISTINCT FROM 'doing'
      AND job.worker_id IS NOT DISTINCT FROM %(worker_id)s::bigint
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
INSERT INTO pgqueue_workers (name) VALUES (%(name)s::text) RETURNING id;

-- name: heartbeat
-- No row back means another worker found us dead and took our jobs back.
UPDATE pgqueue_workers SET heartbeat_at = now() WHERE id = %(worker_id)s::bigint RETURNING id;

-- name: unregister_worker
DELETE FROM pgqueue_workers WHERE id = %(worker_id)s::bigint;

-- name: requeue_stalled_jobs
-- A worker whose heartbeat is older than `stalled_after` seconds is dead:
-- delete its row and put its 'doing' jobs (running or only fetched) back to
-- 'todo' so another worker runs them. Their attempt stays counted.
-- A 'doing' job whose worker row is gone altogether is handed back as well.
WITH dead AS (
    DELETE FROM pgqueue_workers
    WHERE heartbeat_at < now() - make_interval(secs => %(stalled_after)s::float8)
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
       attempts, lock, queueing_lock, error, scheduled_at, created_at, started_at, finished_at
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
                  'pgqueue_schedules', 'pgqueue_listeners']) AS name
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
-- Like every insert it notifies channel 'pgqueue_ref' (see the top of this
-- file); a Queries object set to another channel notifies that one too.
WITH inserted AS (
    INSERT INTO pgqueue_jobs (face, task_name, payload, priority, queueing_lock, scheduled_at)
    SELECT %(face)s::text, task_name, payload, priority, queueing_lock,
           now() + make_interval(secs => schedule_in)
    FROM unnest(
        %(task_names)s::text[],
        %(payloads)s::bytea[],
        %(priorities)s::integer[],
        %(queueing_locks)s::text[],
        %(schedule_ins)s::float8[]
    ) WITH ORDINALITY AS job(task_name, payload, priority, queueing_lock, schedule_in, position)
    ORDER BY position
    RETURNING id, queueing_lock
), woken AS (
    SELECT count(pg_notify(channel, %(face)s::text || ':default'))
    FROM (VALUES ('pgqueue_ref'), (%(channel)s::text)) AS channels(channel)
    WHERE EXISTS (SELECT FROM inserted)
)
SELECT id, queueing_lock FROM inserted, woken;

-- name: enqueue_jobs_skip_duplicates
-- enqueue_jobs with on_conflict="skip": a job whose dedupe key is taken by a
-- waiting job (or by an earlier job of the same batch) is left out instead of
-- failing the statement. The conflict target names the partial unique index
-- of sql/schema.sql (its column and its WHERE). The caller learns which jobs
-- were skipped from the dedupe keys that come back.
WITH inserted AS (
    INSERT INTO pgqueue_jobs (face, task_name, payload, priority, queueing_lock, scheduled_at)
    SELECT %(face)s::text, task_name, payload, priority, queueing_lock,
           now() + make_interval(secs => schedule_in)
    FROM unnest(
        %(task_names)s::text[],
        %(payloads)s::bytea[],
        %(priorities)s::integer[],
        %(queueing_locks)s::text[],
        %(schedule_ins)s::float8[]
    ) WITH ORDINALITY AS job(task_name, payload, priority, queueing_lock, schedule_in, position)
    ORDER BY position
    ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
    RETURNING id, queueing_lock
), woken AS (
    SELECT count(pg_notify(channel, %(face)s::text || ':default'))
    FROM (VALUES ('pgqueue_ref'), (%(channel)s::text)) AS channels(channel)
    WHERE EXISTS (SELECT FROM inserted)
)
SELECT id, queueing_lock FROM inserted, woken;

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
