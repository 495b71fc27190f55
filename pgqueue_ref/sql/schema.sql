-- The whole pgqueue_ref schema. Both faces (App and Queue) write these tables
-- and one worker engine serves them.
--
-- Applying it twice is harmless: every statement is IF NOT EXISTS or
-- CREATE OR REPLACE. It contains no percent sign, so every driver can run it
-- as one plain string, parameter style or not (a test pins this).

-- One row per job, from deferral until it is deleted by the user.
CREATE TABLE IF NOT EXISTS pgqueue_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Which API wrote the job, and so which workers serve it: 'app' jobs are
    -- run by App workers (JSON args), 'queue' jobs by PgQueuer-style consumers
    -- (bytes payload). Neither face's worker ever fetches the other's jobs.
    face          text        NOT NULL DEFAULT 'app' CHECK (face IN ('app', 'queue')),
    queue         text        NOT NULL DEFAULT 'default',
    task_name     text        NOT NULL,          -- PgQueuer calls it the entrypoint
    args          jsonb       NOT NULL DEFAULT '{}',
    payload       bytea,
    priority      integer     NOT NULL DEFAULT 0, -- higher runs first
    status        text        NOT NULL DEFAULT 'todo'
                  CHECK (status IN ('todo', 'doing', 'succeeded', 'failed', 'cancelled', 'aborted')),
    scheduled_at  timestamptz,                   -- NULL: as soon as possible
    attempts      integer     NOT NULL DEFAULT 0, -- incremented when a worker claims the job
    lock          text,                          -- jobs sharing a lock run one at a time, in id order
    queueing_lock text,                          -- PgQueuer calls it the dedupe key
    worker_id     bigint,                        -- the worker holding the job while 'doing'
    abort_requested boolean   NOT NULL DEFAULT false,
    error         text,                          -- the last failure, kept for the user
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);

-- The fetch reads only waiting jobs, in the order it runs them: a partial
-- index keeps it small however many finished jobs the table holds. The face
-- leads the key so that a worker walks only its own face's jobs, and so that
-- the planner picks this ordered index scan (which stops after `limit` rows)
-- even on a table never analysed, such as one just filled by a burst of
-- jobs: without it, the default selectivity of `face = $1` makes the planner
-- expect one row and prefer reading and sorting every waiting job, which made
-- each fetch of 100 jobs out of 100,000 take 40 ms instead of 1 ms.
CREATE INDEX IF NOT EXISTS pgqueue_jobs_fetch_idx
    ON pgqueue_jobs (face, priority DESC, id)
    WHERE status = 'todo';

-- At most one waiting job per queueing lock: the second defer fails with a
-- unique violation on this index, which becomes AlreadyEnqueued.
CREATE UNIQUE INDEX IF NOT EXISTS pgqueue_jobs_queueing_lock_idx
    ON pgqueue_jobs (queueing_lock)
    WHERE status = 'todo' AND queueing_lock IS NOT NULL;

-- The fetch asks "does an earlier job with my lock still wait or run?".
CREATE INDEX IF NOT EXISTS pgqueue_jobs_lock_idx
    ON pgqueue_jobs (lock, id)
    WHERE status IN ('todo', 'doing') AND lock IS NOT NULL;

-- Finding the jobs of a dead worker.
CREATE INDEX IF NOT EXISTS pgqueue_jobs_worker_idx
    ON pgqueue_jobs (worker_id)
    WHERE status = 'doing';

-- One row per running worker. The worker updates heartbeat_at every few
-- seconds; a row whose heartbeat is old belongs to a worker that died, and its
-- 'doing' jobs are handed back to the queue. One heartbeat per worker, not one
-- per job, so a busy worker does not pay a write for every job it runs.
CREATE TABLE IF NOT EXISTS pgqueue_workers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- The application_name of the worker's connections (its connector's tag), or
    -- NULL: whose backends to terminate if the worker is presumed dead
    -- (requeue_stalled_jobs, the fence's server-side half).
    session_tag  text
);
-- Installed before the server-side fence: add the column (a no-op otherwise).
ALTER TABLE pgqueue_workers ADD COLUMN IF NOT EXISTS session_tag text;

-- Periodic tasks of the App face (@app.periodic): one row per period deferred.
-- The primary key is what makes "each period deferred exactly once, however
-- many workers race for it" a property of the database: every worker's
-- periodic deferrer tries the same INSERT ... ON CONFLICT DO NOTHING, and the
-- job is inserted by that same statement only if its row went in
-- (defer_periodic_job in queries.sql). job_id is not a foreign key: retention
-- deletes jobs, and their period must stay taken. Rows older than the
-- deferrer's max_delay are deleted by the defers that follow them.
CREATE TABLE IF NOT EXISTS pgqueue_periodic_defers (
    task_name       text        NOT NULL,
    periodic_id     text        NOT NULL DEFAULT '',
    defer_timestamp bigint      NOT NULL, -- the period's start, epoch seconds
    job_id          bigint,
    deferred_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_name, periodic_id, defer_timestamp)
);

-- Schedules of the Queue face (@pgq.schedule), PgQueuer's table and columns:
-- one row per entrypoint and cron expression, shared by every consumer.
-- last_run is the start of the last period that fired (a consumer claims a
-- period by moving last_run forward, which only one of them can do);
-- next_run the period after it. status is 'picked' while a consumer runs the
-- callback, 'queued' otherwise; heartbeat is when a consumer last claimed or
-- released the row.
CREATE TABLE IF NOT EXISTS pgqueue_schedules (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entrypoint text        NOT NULL,
    expression text        NOT NULL,
    heartbeat  timestamptz NOT NULL DEFAULT now(),
    created    timestamptz NOT NULL DEFAULT now(),
    updated    timestamptz NOT NULL DEFAULT now(),
    next_run   timestamptz NOT NULL,
    last_run   timestamptz,
    status     text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'picked')),
    UNIQUE (entrypoint, expression)
);

-- Workers are woken by the statements that insert jobs, each of which calls
-- pgqueue_wake(face, queue) below itself (sql/queries.sql says why not a
-- trigger). Earlier versions of this schema had a trigger for it: drop it, so
-- a database made by them does not notify twice.
DROP TRIGGER IF EXISTS pgqueue_jobs_notify ON pgqueue_jobs;
DROP FUNCTION IF EXISTS pgqueue_notify_inserted();

-- The Queue face's per-entrypoint concurrency limits (PgQueuer's
-- entrypoint(concurrency_limit=N)), enforced across every consumer by the
-- database. A claim of a limited entrypoint gives each job it claims a free
-- seat: a slot number from 1 to N that no running job of that entrypoint
-- holds (fetch_jobs_limited in queries.sql). Counting running jobs alone
-- cannot hold a limit: two claims at once each count in their own snapshot,
-- see the same free room, and together overshoot. This unique index is what
-- holds it, because a uniqueness check sees rows not yet committed: the
-- second of two claims that chose the same seat waits for the first, then
-- fails with a unique violation, and its consumer claims again (and now sees
-- the seat taken). A seat counts only for the claim that gave it:
-- slot_started_at is that claim's started_at, so a job claimed again later
-- by a consumer without a limit (a fleet that disagrees) leaves the index.
ALTER TABLE pgqueue_jobs ADD COLUMN IF NOT EXISTS slot integer;
ALTER TABLE pgqueue_jobs ADD COLUMN IF NOT EXISTS slot_started_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS pgqueue_jobs_slot_idx
    ON pgqueue_jobs (face, task_name, slot)
    WHERE status = 'doing' AND slot IS NOT NULL AND slot_started_at = started_at;
-- ===========================================================================
-- PgQueuer's headers, queue log and statistics (the Queue face, issue 21).
-- ===========================================================================

-- enqueue(..., headers={...}): a JSON object of strings per job, NULL without
-- one, handed to the entrypoint as job.headers (tracing context, say).
ALTER TABLE pgqueue_jobs ADD COLUMN IF NOT EXISTS headers jsonb;

-- PgQueuer's queue log (queue_log(), log_statistics()...), read from the jobs
-- themselves rather than written beside them. PgQueuer inserts one log row per
-- transition of every job (queued, picked, then successful, exception or
-- canceled) in the statements that make them: a second write for each, on the
-- path that finishes jobs. Our finished jobs stay in pgqueue_jobs (until
-- retention deletes them), and each row already holds the times of its
-- transitions, so this view rebuilds the same log from them at no cost to
-- the queue: nothing more is written per job. What that gives up: a retried
-- job shows only its last attempt, and a job deleted (delete_jobs=,
-- delete_old_jobs, clear_queue_log) leaves the log with it.
CREATE OR REPLACE VIEW pgqueue_queue_log AS
SELECT created_at AS created, id AS job_id, 'queued' AS status, priority,
       task_name AS entrypoint, NULL::text AS traceback
FROM pgqueue_jobs
WHERE face = 'queue'
UNION ALL
SELECT started_at, id, 'picked', priority, task_name, NULL
FROM pgqueue_jobs
WHERE face = 'queue' AND started_at IS NOT NULL
UNION ALL
SELECT finished_at, id,
       CASE status WHEN 'succeeded' THEN 'successful' WHEN 'failed' THEN 'exception'
                   ELSE 'canceled' END,
       priority, task_name, error
FROM pgqueue_jobs
WHERE face = 'queue' AND finished_at IS NOT NULL
  AND status IN ('succeeded', 'failed', 'cancelled', 'aborted');

-- Completion watchers (pgqueue_ref.completion.CompletionWatcher), one row
-- each while it listens. A worker announces the outcomes it recorded only
-- while a watcher is here (announce_finished): a NOTIFY makes its commit wait
-- for every other NOTIFYing transaction's (see pgqueue_wake's comment), a
-- cost that no worker should pay for watchers nobody runs. A watcher touches
-- its row every WATCHER_TOUCH_EVERY seconds; one that died without deleting
-- it stops counting a minute later.
CREATE TABLE IF NOT EXISTS pgqueue_watchers (
    id      bigserial   PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
-- Wake-ups: NOTIFY only when a listening worker sleeps. PostgreSQL commits
-- the transactions that sent a NOTIFY one at a time (PreCommit_Notify in
-- async.c takes a cluster-wide lock and holds it until the commit record is
-- flushed), so a NOTIFY in every defer makes concurrent producers queue up
-- behind each other's disk flushes. Most defers need none: every worker is
-- busy and will claim the job anyway. A worker of the App face that found
-- nothing to claim marks itself idle here (go_idle in queries.sql) before it
-- sleeps, and unmarks itself once a claim brings jobs (worker_busy); a
-- defer sends its NOTIFY only while an idle worker listens on its queue.
-- docs/architecture.md ("Wake-ups") proves that no wake-up is lost:
-- the advisory lock below orders every defer against a worker going idle.
-- One row per worker that ever went idle, updated in place (HOT: no indexed
-- column changes); deleted with its worker's row.
CREATE TABLE IF NOT EXISTS pgqueue_listeners (
    worker_id bigint  PRIMARY KEY REFERENCES pgqueue_workers (id) ON DELETE CASCADE,
    face      text    NOT NULL,
    queues    text[],                  -- NULL: every queue of its face
    idle      boolean NOT NULL
);

-- Called by every statement that makes a job ready, of either face. It takes the
-- wake lock (advisory lock (1885827442, 1), 'pgqr' in ASCII) in SHARED mode,
-- which defers never wait for among themselves, and holds it until commit;
-- then it reads pgqueue_listeners with a snapshot taken after the lock (a
-- VOLATILE plpgsql function takes one per statement under READ COMMITTED).
-- A worker going idle commits its flag while holding the same lock in
-- EXCLUSIVE mode, tried without waiting: if it got it, every defer that read
-- the flags before it had committed its job already, so the worker's next
-- claim sees that job; every later defer sees the flag. Under REPEATABLE READ
-- or SERIALIZABLE the transaction's snapshot may predate the flag: notify.
CREATE OR REPLACE FUNCTION pgqueue_wake(wake_face text, wake_queue text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1885827442, 1);
    IF current_setting('transaction_isolation') <> 'read committed'
       OR EXISTS (SELECT FROM pgqueue_listeners AS l
                  WHERE l.idle AND l.face = wake_face
                    AND (l.queues IS NULL OR wake_queue = ANY(l.queues)))
    THEN
        PERFORM pg_notify('pgqueue_ref', wake_face || ':' || wake_queue);
    END IF;
END;
$$;
