"""The command line: ``python -m pgqueue_ref COMMAND`` (also ``pgqueue-ref``).

Commands a user of procrastinate or PgQueuer expects::

    schema apply | schema check     create the tables (idempotent) / say whether they are there
    defer TASK [JSON]               defer a job by task name, arguments as a JSON object
    worker                          run a worker for an app (--app module:attribute)
    status                          jobs per face, queue and status; the Queue face's schedules
    jobs                            the most recent jobs
    jobs prune --older-than HOURS   delete jobs finished more than HOURS ago
    failed                          the Queue face's failed jobs, with their errors (PgQueuer's ``pgq failed``)
    requeue ID [ID ...]             run failed Queue-face jobs again (PgQueuer's ``pgq requeue``)
    jobs retry|cancel|abort ID      retry a failed job, cancel a waiting one, abort a running one
    dashboard [--port 8000]         the queue's live state in a browser, and /metrics
    embedded                        start a throwaway PostgreSQL and print its DSN
    demo, bench                     the demo and the benchmark

Where the database is: ``--dsn``, else ``PGQUEUE_REF_DSN``, else the libpq
``PG*`` variables; with ``--app``, the app's own connector.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._table import format_table
from .app import App
from .connectors.psycopg import PsycopgConnector
from .embedded import DSN_ENV, LIBPQ_SERVER_ENV
from .exceptions import ConnectionFailed, PgQueueError
from .worker import Worker, WorkerStats

__all__ = ["build_parser", "main"]

logger = logging.getLogger("pgqueue_ref.cli")


class UsageError(PgQueueError):
    """A mistake on the command line: printed without a traceback, exit code 2.

    A :class:`~pgqueue_ref.exceptions.PgQueueError`; :func:`main` catches it
    before the other ones, which exit with code 1.
    """


# -- finding the app and the database ------------------------------------------


def load_app(path: str) -> App:
    """``package.module:attribute`` (or ``package.module.attribute``) → the App there."""
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise UsageError(f"--app {path!r}: expected 'package.module:app'")
    sys.path.insert(0, os.getcwd())  # like `python -m`, find modules of the current folder
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--app {path!r}: cannot import {module_name!r} ({error})") from error
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise UsageError(f"--app {path!r}: {module_name}.{attribute} is not a pgqueue_ref.App")
    return app


def configured_dsn(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get(DSN_ENV):
        return os.environ[DSN_ENV]
    if any(os.environ.get(name) for name in LIBPQ_SERVER_ENV):
        return ""  # libpq reads PGHOST, PGPORT... itself
    raise UsageError(
        f"no database configured: pass --dsn, set {DSN_ENV} or the libpq PG* variables, "
        "or start a throwaway one with 'python -m pgqueue_ref embedded'"
    )


def the_app(args: argparse.Namespace) -> App:
    if args.app:
        return load_app(args.app)
    return App(connector=PsycopgConnector(conninfo=configured_dsn(args.dsn)))


# -- commands ---------------------------------------------------------------------


async def cmd_schema(args: argparse.Namespace) -> int:
    app = the_app(args)
    async with app.open_async():
        if args.action == "apply":
            await app.schema_manager.apply_schema_async()
            print("schema applied")
            return 0
        missing = await app.schema_manager.missing_tables_async()
        if missing:
            print(f"schema missing: {', '.join(missing)} (run 'schema apply')")
            return 1
        print("schema ok")
        return 0


async def cmd_defer(args: argparse.Namespace) -> int:
    try:
        kwargs = json.loads(args.args)
    except json.JSONDecodeError as error:
        raise UsageError(f"arguments {args.args!r} are not JSON: {error}") from error
    if not isinstance(kwargs, dict):
        raise UsageError(f'arguments must be a JSON object like {{"a": 1}}, got {args.args!r}')
    app = the_app(args)
    options: dict[str, Any] = {"queue": args.queue, "priority": args.priority, "lock": args.lock,
                               "queueing_lock": args.queueing_lock}  # fmt: skip
    if args.schedule_in is not None:
        options["schedule_in"] = {"seconds": args.schedule_in}
    async with app.open_async():
        job_id = await app.configure_task(args.task, **options).defer_async(**kwargs)
    print(
        f"job {job_id} deferred: {args.task}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    )
    return 0


async def cmd_worker(args: argparse.Namespace) -> int:
    if not args.app:
        raise UsageError("worker needs --app package.module:app, to know the tasks it runs")
    app = load_app(args.app)
    options: dict[str, Any] = {"concurrency": args.concurrency, "wait": not args.drain}
    if args.queues:
        options["queues"] = args.queues.split(",")
    for name in ("prefetch", "stalled_after", "heartbeat_interval", "shutdown_timeout",
                 "delete_jobs"):  # fmt: skip
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    stats = await _run_worker(app, options, args.wait_for_database)
    if stats is None:
        return 0  # stopped while waiting for the database
    print(f"worker stopped: {stats.succeeded} succeeded, {stats.failed} failed, "
          f"{stats.retried} retried, {stats.handed_back} handed back", file=sys.stderr)  # fmt: skip
    return 0


#: Seconds between attempts to reach the database at a worker's start: doubling, capped.
START_RETRY_FIRST, START_RETRY_MAX = 0.5, 5.0


def _worth_waiting_for(error: ConnectionFailed) -> bool:
    """An outage passes (refused, starting up, shutting down); a wrong password, an
    unknown user or database, or a pg_hba.conf refusal does not: say so at once."""
    if error.sqlstate is not None and (error.sqlstate[:2] == "28" or error.sqlstate == "3D000"):
        return False
    text = str(error)
    return not any(
        phrase in text
        for phrase in ("password authentication failed", "pg_hba.conf", "does not exist")
    )


async def _run_worker(
    app: App, options: dict[str, Any], wait_for_database: float
) -> WorkerStats | None:
    """Open the app and run a worker; while the database cannot be reached (a worker
    started, or restarted by its supervisor, during an outage), wait and try again
    with backoff, logging what it waits for, for up to ``wait_for_database`` seconds.
    None if a stop signal came while waiting."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    worker: Worker | None = None

    def on_signal() -> None:  # stop gracefully: running jobs finish
        stop.set()
        if worker is not None:
            worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    started, delay = time.monotonic(), START_RETRY_FIRST
    while not stop.is_set():
        worker = None
        try:
            async with app.open_async():
                worker = app.worker(**options)
                if stop.is_set():
                    worker.stop()
                print(f"worker started (queues: {','.join(options.get('queues') or ['all'])}, "
                      f"concurrency {options['concurrency']})", file=sys.stderr, flush=True)  # fmt: skip
                return await worker.run()
        except ConnectionFailed as error:
            if worker is not None and worker.worker_id is not None:
                raise  # it ran: what stopped it is its own error to report
            waited = time.monotonic() - started
            if not _worth_waiting_for(error) or waited + delay > wait_for_database:
                raise
            logger.warning(
                "waiting for the database: %s; trying again in %.1f s (waited %.0f s so far%s)",
                " ".join(str(error).split()), delay, waited,  # one line
                "" if wait_for_database == float("inf")
                else f", giving up after {wait_for_database:g} s",
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, START_RETRY_MAX)
    return None


async def cmd_status(args: argparse.Namespace) -> int:
    app = the_app(args)
    async with app.open_async():
        rows = await app.job_manager.status_counts_async()
        schedules = await app.job_manager.list_schedules_async()
    print(format_table(["face", "queue", "status", "jobs"],
                       [[r["face"], r["queue"], r["status"], r["count"]] for r in rows]))  # fmt: skip
    if schedules:  # the Queue face's @pgq.schedule rows
        print()
        print(format_table(
            ["schedule", "expression", "status", "last_run", "next_run"],
            [[r["entrypoint"], r["expression"], r["status"], _when(r["last_run"]),
              _when(r["next_run"])] for r in schedules],
        ))  # fmt: skip
    return 0


def _when(moment: datetime.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


async def cmd_jobs(args: argparse.Namespace) -> int:
    app = the_app(args)
    async with app.open_async():
        rows = await app.job_manager.list_job_rows_async(queue=args.queue, limit=args.limit)
    print(format_table(
        ["id", "queue", "task", "status", "attempts", "args", "error"],
        [[r["id"], r["queue"], r["task_name"], r["status"], r["attempts"], _short(r["args"], 40),
          _short(r["error"] or "", 50)] for r in rows],
    ))  # fmt: skip
    return 0


async def cmd_jobs_prune(args: argparse.Namespace) -> int:
    app = the_app(args)
    async with app.open_async():
        deleted = await app.job_manager.delete_old_jobs(
            args.older_than,
            queue=args.queue,
            include_failed=args.include_failed,
            include_cancelled=args.include_cancelled,
            include_aborted=args.include_aborted,
        )
    print(f"deleted {deleted} jobs finished more than {args.older_than:g} hours ago")
    return 0


# -- the Queue face's held failures (PgQueuer's `pgq failed` and `pgq requeue`) ----------


async def cmd_failed(args: argparse.Namespace) -> int:
    from .queries import Queries

    app = the_app(args)
    async with app.open_async():
        jobs = await Queries(app.connector).list_failed_jobs(limit=args.limit)
    if not jobs:
        print("No failed jobs.")
        return 0
    print(format_table(
        ["id", "entrypoint", "attempts", "finished", "payload bytes", "error"],
        [[j.id, j.entrypoint, j.attempts, _when(j.finished_at), len(j.payload or b""),
          _short(j.error or "", 50)] for j in jobs],
    ))  # fmt: skip
    return 0


async def cmd_requeue(args: argparse.Namespace) -> int:
    from .queries import Queries

    app = the_app(args)
    async with app.open_async():
        requeued = await Queries(app.connector).requeue_jobs(args.ids)
    left = sorted(set(args.ids) - set(requeued))
    print(f"Re-queued {len(requeued)} job(s)."
          + (f" Not failed Queue-face jobs, left alone: {', '.join(map(str, left))}." if left else ""))  # fmt: skip
    return 0


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_embedded(args: argparse.Namespace) -> int:
    from .embedded import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        print(server.dsn_url, flush=True)
        print(f"PostgreSQL is running; use it with: export {DSN_ENV}={server.dsn_url}\n"
              "Ctrl-C (or SIGTERM) stops it and deletes its data.", file=sys.stderr, flush=True)  # fmt: skip
        _wait_for_stop_signal()
    return 0


def _wait_for_stop_signal() -> None:
    stop = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop:
        time.sleep(0.2)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    logging.getLogger("pgqueue_ref.worker").setLevel(
        logging.CRITICAL
    )  # its failures are on purpose
    run_demo(jobs=args.jobs)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import Sizes, run_bench

    sizes = Sizes(one_by_one=args.one_by_one_jobs, batch=args.jobs, drain=args.jobs,
                  latency_samples=args.latency_samples, memory=args.memory_jobs,
                  producer_jobs=args.producer_jobs)  # fmt: skip
    results = run_bench(sizes=sizes, repeat=args.repeat, subjects=args.subjects, operations=args.operations,
                        output=args.output, plot=args.plot or args.output.with_name("benchmarks.png"),
                        pgbouncer=args.pgbouncer,
                        command=" ".join(["python -m pgqueue_ref", *sys.argv[1:]]))  # fmt: skip
    return 1 if results.failures else 0


# -- the parser -----------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (or inf), got {text!r}")
    return value


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of hours >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m pgqueue_ref",
                                     description="pgqueue_ref: a PostgreSQL job queue, written to be read.")  # fmt: skip
    parser.add_argument(
        "--dsn", help=f"the database (default: ${DSN_ENV}, else the libpq PG* variables)"
    )
    parser.add_argument(
        "--app", help="an App to use, as package.module:app (its connector and tasks)"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    schema = commands.add_parser("schema", help="apply or check the schema")
    schema.add_argument("action", choices=["apply", "check"], help="apply (idempotent) or check")
    schema.set_defaults(run=cmd_schema)

    defer = commands.add_parser("defer", help="defer a job by task name")
    defer.add_argument("task", help="the task name, e.g. 'myapp.tasks.send_email'")
    defer.add_argument(
        "args", nargs="?", default="{}", help='the arguments as a JSON object, e.g. \'{"to": "x"}\''
    )
    defer.add_argument("--queue", help="queue (default: the task's, else 'default')")
    defer.add_argument("--priority", type=int, help="priority; higher runs first")
    defer.add_argument("--lock", help="jobs sharing a lock run one at a time")
    defer.add_argument("--queueing-lock", help="refuse the job if one with this lock is waiting")
    defer.add_argument(
        "--schedule-in", type=float, metavar="SECONDS", help="run no sooner than this"
    )
    defer.set_defaults(run=cmd_defer)

    worker = commands.add_parser("worker", help="run a worker (needs --app)",
                                 description="Run jobs of the app's tasks until SIGTERM/Ctrl-C (graceful: "
                                             "running jobs finish), or with --drain until none is ready.")  # fmt: skip
    worker.add_argument("--queues", help="comma-separated queues (default: all)")
    worker.add_argument(
        "--concurrency", type=_positive, default=1, help="jobs run at once (default 1)"
    )
    worker.add_argument("--prefetch", type=_positive, help="jobs claimed per round trip")
    worker.add_argument("--drain", action="store_true", help="stop when no job is ready")
    worker.add_argument(
        "--stalled-after",
        type=float,
        help="seconds of silence before a worker is dead (it fences itself after half of them)",
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=float,
        help="seconds between heartbeats, at most a quarter of --stalled-after",
    )
    worker.add_argument(
        "--shutdown-timeout", type=float, help="seconds running jobs get to finish on stop"
    )
    worker.add_argument(
        "--wait-for-database",
        type=_seconds,
        default=float("inf"),
        metavar="SECONDS",
        help="at start, while the database cannot be reached, retry with backoff for up to "
        "this long (default: until it can; 0: fail at once)",
    )
    worker.add_argument("--delete-jobs", choices=["never", "successful", "always"],
                        help="delete jobs once they succeeded / finished (default: never)")  # fmt: skip
    worker.set_defaults(run=cmd_worker)

    status = commands.add_parser("status", help="jobs per face, queue and status")
    status.set_defaults(run=cmd_status)

    jobs = commands.add_parser("jobs", help="the most recent jobs")
    jobs.add_argument("--queue", help="only this queue")
    jobs.add_argument("--limit", type=_positive, default=20, help="how many (default 20)")
    jobs.set_defaults(run=cmd_jobs)
    jobs_actions = jobs.add_subparsers(dest="action", metavar="ACTION")
    prune = jobs_actions.add_parser(
        "prune", help="delete jobs finished more than --older-than hours ago",
        description="Delete finished jobs (succeeded ones, and the others asked for) whose "
        "finished_at is more than HOURS ago, 10,000 per statement. Waiting and running jobs "
        "are never deleted.",
    )  # fmt: skip
    prune.add_argument("--older-than", type=_hours, required=True, metavar="HOURS",
                       help="finished at least this many hours ago (0: every finished job)")  # fmt: skip
    prune.add_argument("--queue", help="only this queue")
    prune.add_argument("--include-failed", action="store_true", help="failed jobs too")
    prune.add_argument("--include-cancelled", action="store_true", help="cancelled jobs too")
    prune.add_argument("--include-aborted", action="store_true", help="aborted jobs too")
    prune.set_defaults(run=cmd_jobs_prune)
    _add_job_actions(jobs_actions)

    failed = commands.add_parser(
        "failed", help="the Queue face's failed jobs, newest first, with their errors"
    )
    failed.add_argument("--limit", type=_positive, default=25, help="how many (default 25)")
    failed.set_defaults(run=cmd_failed)
    requeue = commands.add_parser(
        "requeue", help="run failed Queue-face jobs again, attempts back to 0"
    )
    requeue.add_argument("ids", type=_positive, nargs="+", metavar="ID", help="job ids")
    requeue.set_defaults(run=cmd_requeue)

    embedded = commands.add_parser(
        "embedded", help="start a throwaway PostgreSQL and print its DSN"
    )
    embedded.set_defaults(run=cmd_embedded)

    demo = commands.add_parser(
        "demo", help="defer a few hundred jobs and run them, on a throwaway PostgreSQL"
    )
    demo.add_argument("--jobs", type=_positive, default=300, help="how many jobs (default 300)")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser(
        "bench", help="measure pgqueue_ref beside procrastinate, PgQueuer and a minimal SQL loop",
        description="On fresh databases of one PostgreSQL with stock settings, measure for every "
        "installed subject: enqueue one by one, batch enqueue, drain by one worker process, "
        "defer-to-start latency, and the worker's memory over a long drain. Prints medians with "
        "min-max and the ratios between subjects; writes JSON, a Markdown table and a plot. "
        'procrastinate and PgQueuer join when installed (pip install -e ".[bench]").',
    )  # fmt: skip
    bench.add_argument(
        "--jobs",
        type=_positive,
        default=10_000,
        help="jobs per batch and drain run (default 10000)",
    )
    bench.add_argument(
        "--one-by-one-jobs", type=_positive, default=1000, help="jobs per one-by-one run"
    )
    bench.add_argument(
        "--latency-samples", type=_positive, default=200, help="jobs per latency run"
    )
    bench.add_argument("--memory-jobs", type=_positive, default=50_000,
                       help="jobs drained while the worker's memory is sampled")  # fmt: skip
    bench.add_argument("--producer-jobs", type=_positive, default=3000,
                       help="jobs per kind of producer and round of the producers scenario")  # fmt: skip
    bench.add_argument("--repeat", type=_positive, default=3, help="repetitions (default 3)")
    bench.add_argument("--subjects", nargs="+", metavar="TEXT",
                       help="only subjects whose name contains one of these (default: all installed)")  # fmt: skip
    operations = ["enqueue_one", "enqueue_batch", "drain", "latency", "memory", "producers",
                  "scaling"]  # fmt: skip
    bench.add_argument(
        "--operations", nargs="+", choices=operations, default=operations, help="what to measure"
    )
    bench.add_argument("--pgbouncer", action="store_true",
                       help="also run pgqueue_ref's subjects through a PgBouncer (transaction mode) "
                       "in front of the same server, each beside its direct run; LISTEN stays "
                       "direct (needs the pgbouncer program)")  # fmt: skip
    bench.add_argument("--output", type=Path, default=Path("bench-results/bench.json"),
                       help="JSON results; a Markdown table is written beside it")  # fmt: skip
    bench.add_argument("--plot", type=Path, default=None,
                       help="the plot (PNG; default: benchmarks.png beside --output)")  # fmt: skip
    bench.set_defaults(run=cmd_bench)
    _add_dashboard(commands)
    return parser


# -- the dashboard, and the actions it shares with `jobs` --------------------------------

#: Where the dashboard's token may come from instead of --token (which `ps` shows).
DASHBOARD_TOKEN_ENV = "PGQUEUE_REF_DASHBOARD_TOKEN"


async def cmd_job_action(args: argparse.Namespace) -> int:
    from .dashboard.actions import run_action_async

    app = the_app(args)
    async with app.open_async():
        result = await run_action_async(app.job_manager, args.action, args.job_id)
    print(result.message)
    return 0 if result.done else 1


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import load
    from .exceptions import UnsafeDashboard

    serving = load("serving")
    try:
        settings = serving.Settings(host=args.host, read_only=args.read_only,
                                   token=args.token or os.environ.get(DASHBOARD_TOKEN_ENV) or None,
                                   refresh=args.refresh, allowed_hosts=tuple(args.allow_host))  # fmt: skip
    except (UnsafeDashboard, ValueError) as error:  # no token, a short one, --refresh 0
        raise UsageError(str(error)) from None

    def ready(url: str) -> None:
        guard = "token required" if settings.token else "local only"
        mode = "read-only" if settings.read_only else "with actions"
        print(f"dashboard at {url} ({guard}, {mode}); metrics at {url}metrics. Ctrl-C stops it.",
              file=sys.stderr, flush=True)  # fmt: skip

    try:
        serving.run(the_app(args), settings, args.port, ready)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    return 0


def _add_job_actions(jobs_actions: Any) -> None:
    for action, help_text in (("retry", "put a failed job back to wait"),
                              ("cancel", "cancel a waiting job"),
                              ("abort", "ask a running job to abort")):  # fmt: skip
        command = jobs_actions.add_parser(action, help=help_text,
                                          description=f"{help_text[0].upper()}{help_text[1:]}; "
                                          "exit code 1 if it was not (the message says why).")  # fmt: skip
        command.add_argument("job_id", type=_positive, metavar="ID", help="the job's id")
        command.set_defaults(run=cmd_job_action)


def _add_dashboard(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="the queue's live state in a browser, and /metrics for Prometheus",
        description="Serve one page that refreshes itself (counts per queue, task and status, "
        "throughput, workers, failed, scheduled and periodic jobs; retry, cancel, abort behind "
        "a confirmation) and /metrics in Prometheus' text format. Needs the 'dashboard' extra.",
    )  # fmt: skip
    # SUPPRESS: given here or before the command (`--dsn X dashboard`), never reset to None.
    dashboard.add_argument("--dsn", default=argparse.SUPPRESS,
                           help=f"the database (default: ${DSN_ENV}, else the libpq PG* variables)")  # fmt: skip
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; any other needs --token)")  # fmt: skip
    dashboard.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; 0: a free one)"
    )
    dashboard.add_argument("--read-only", action="store_true", help="show, never act: no actions")
    dashboard.add_argument(
        "--token", help=f"required of every request (default: ${DASHBOARD_TOKEN_ENV})"
    )
    dashboard.add_argument("--refresh", type=float, default=1.0,
                           help="seconds between the page's refreshes (default 1)")  # fmt: skip
    dashboard.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                           help="also accept this Host header without a token (a proxy's name)")  # fmt: skip
    dashboard.set_defaults(run=cmd_dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], Any] = args.run
    try:
        result = run(args)
        code = asyncio.run(result) if asyncio.iscoroutine(result) else result
    except UsageError as error:
        _fail(parser, str(error))
    except PgQueueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return int(code)


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.exit(2, f"{parser.prog}: error: {message}\n")
