"""The command line: ``python -m pgqueue_ref COMMAND`` (also ``pgqueue-ref``).

Commands a user of procrastinate or PgQueuer expects::

    schema apply | schema check     create the tables (idempotent) / say whether they are there
    defer TASK [JSON]               defer a job by task name, arguments as a JSON object
    worker                          run a worker for an app (--app module:attribute)
    status                          jobs per face, queue and status; the Queue face's schedules
    jobs                            the most recent jobs
    jobs prune --older-than HOURS   delete jobs finished more than HOURS ago
    embedded                        start a throwaway PostgreSQL and print its DSN
    demo, bench                     the demo and the benchmark

Where the database is: ``--dsn``, else ``PGQUEUE_REF_DSN``, else the libpq
``PG*`` variables; with ``--app``, the app's own connector.
"""

from __future__ import annotations

import argparse
import asyncio
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
from .exceptions import PgQueueError

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
    async with app.open_async():
        worker = app.worker(**options)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):  # stop gracefully: finish running jobs
            loop.add_signal_handler(signum, worker.stop)
        print(f"worker started (queues: {args.queues or 'all'}, concurrency {args.concurrency})",
              file=sys.stderr, flush=True)  # fmt: skip
        stats = await worker.run()
    print(f"worker stopped: {stats.succeeded} succeeded, {stats.failed} failed, "
          f"{stats.retried} retried, {stats.handed_back} handed back", file=sys.stderr)  # fmt: skip
    return 0


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
        rows = await app.job_manager.list_jobs_async(queue=args.queue, limit=args.limit)
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
                        output=args.output, plot=args.plot, pgbouncer=args.pgbouncer,
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
    bench.add_argument(
        "--plot", type=Path, default=Path("bench-results/benchmarks.png"), help="the plot (PNG)"
    )
    bench.set_defaults(run=cmd_bench)
    return parser


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
