"""Retention soak: millions of jobs through one worker, the table's size and the
drain rate watched all along.

    python tools/soak.py --jobs 2000000 --retention successful never

For each ``--retention`` mode, in turn, on a brand-new embedded PostgreSQL
with stock settings (autovacuum as shipped, ``fsync`` on; ``--setting``
changes one, e.g. ``--setting autovacuum_naptime=10s``):

* a producer keeps about ``--backlog`` jobs waiting (``batch_defer_async`` of
  ``--batch`` no-op jobs at a time) until ``--jobs`` have been deferred;
* one App worker (``PsycopgConnector``, concurrency 16, as in the benchmark)
  runs them, in the same process;
* every ``--sample-every`` seconds the table is measured
  (``app.job_manager.table_stats_async()``: ``pg_total_relation_size``, live
  and dead rows, autovacuums) and a progress line is printed.

Modes: ``successful`` (the worker's ``delete_jobs="successful"``: the
statement that records a success deletes the job), ``prune`` (a periodic task
calling the builtin ``remove_old_jobs(max_hours=0)`` every ``--prune-every``
seconds) and ``never`` (no retention, the comparison).

The drain rate is given per tenth of the jobs (the time between the runs of
job N/10·k and N/10·(k+1)), so the first 10% and the last compare directly.
The results go to ``--output`` (JSON) and ``--plot`` (PNG: size and rate over
the run, one line per mode). Exit status 1 if a job did not run exactly once
or the table is left with unfinished jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgqueue_ref import App, PsycopgConnector, builtin_tasks
from pgqueue_ref._table import format_table
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.table_stats import MB

MODES = {
    "successful": 'delete_jobs="successful"',
    "prune": "periodic remove_old_jobs(max_hours=0)",
    "never": "no retention",
}
CONCURRENCY = 16
UNFINISHED = """
    SELECT count(*) FILTER (WHERE status = 'todo'), count(*) FILTER (WHERE status = 'doing')
    FROM pgqueue_jobs
    WHERE status IN ('todo', 'doing')
"""


@dataclasses.dataclass
class Counter:
    """Runs of the no-op task, and when each tenth of the jobs was reached."""

    jobs: int
    ran: int = 0
    deferred: int = 0
    seen: bytearray = dataclasses.field(default_factory=bytearray)
    repeats: int = 0

    def __post_init__(self) -> None:
        self.seen = bytearray(self.jobs)

    def hit(self, n: int) -> None:
        if self.seen[n]:
            self.repeats += 1
            return
        self.seen[n] = 1
        self.ran += 1


async def soak(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = " ".join(f"-c {s}" for s in args.setting)
    pg = EmbeddedPostgres(postgres_args=f"{EmbeddedPostgres.BASE_POSTGRES_ARGS} {settings}")
    try:
        return await _soak_on(pg.dsn_url, mode, args)
    finally:
        pg.stop()


async def _soak_on(dsn: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    counter = Counter(args.jobs)
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(n: int) -> None:
        counter.hit(n)

    if mode == "prune":

        @app.periodic(cron=f"* * * * * */{args.prune_every}", periodic_id="soak-prune")
        @app.task(name="prune", pass_context=True)
        async def prune(context: Any, timestamp: int) -> None:
            await builtin_tasks.remove_old_jobs(context, max_hours=0)

    delete_jobs = "successful" if mode == "successful" else "never"
    samples: list[dict[str, Any]] = []
    async with (
        app.open_async(),
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        await app.schema_manager.apply_schema_async()
        began = time.monotonic()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=CONCURRENCY, delete_jobs=delete_jobs, wait=True)
        )
        producer = asyncio.create_task(_produce(noop, counter, args))
        try:
            while not samples or samples[-1]["done"] < args.jobs:
                await _sample(app, conn, counter, began, samples, mode, args)
                if worker.done():
                    worker.result()  # raises what stopped it
                    raise RuntimeError("the worker stopped before every job ran")
                await asyncio.sleep(args.sample_every)
            await producer
        finally:
            worker.cancel()  # a graceful stop: outcomes are written first
            await asyncio.gather(worker, return_exceptions=True)
        drained = samples[-1]["t"]
        unfinished = await _count(dsn, "status IN ('todo', 'doing') AND task_name = 'noop'")
        kept = await _count(dsn, "task_name = 'noop'")
        await _vacuum(dsn)
        after_vacuum = await app.job_manager.table_stats_async()

    step_rates = _tenths(samples, args.jobs)
    result = {
        "mode": mode,
        "retention": MODES[mode],
        "jobs": args.jobs,
        "seconds": round(drained, 1),
        "ran": counter.ran,
        "repeats": counter.repeats,
        "unfinished": unfinished,
        "jobs_left_in_table": kept,
        "max_total_mb": round(max(s["total_mb"] for s in samples), 1),
        "end_total_mb": samples[-1]["total_mb"],
        "after_vacuum_total_mb": round(after_vacuum.total_mb, 1),
        "autovacuums": samples[-1]["autovacuums"],
        "rate_per_tenth": step_rates,
        "settings": list(args.setting),
        "samples": samples,
    }
    return result


async def _produce(task: Any, counter: Counter, args: argparse.Namespace) -> None:
    deferred = 0
    while deferred < args.jobs:
        if deferred - counter.ran >= args.backlog:
            await asyncio.sleep(0.01)
            continue
        numbers = range(deferred, min(deferred + args.batch, args.jobs))
        await task.batch_defer_async(*({"n": n} for n in numbers))
        deferred = counter.deferred = numbers.stop


async def _sample(
    app: App,
    conn: psycopg.AsyncConnection[Any],
    counter: Counter,
    began: float,
    samples: list[dict[str, Any]],
    mode: str,
    args: argparse.Namespace,
) -> None:
    # Done: deferred and no longer waiting or running, as the database says
    # (the outcome is written), whether the job was then deleted or kept.
    deferred = counter.deferred
    row = await (await conn.execute(UNFINISHED)).fetchone()
    assert row is not None
    waiting, running = row
    stats = await app.job_manager.table_stats_async()
    now = time.monotonic() - began
    done = deferred - waiting - running
    previous = samples[-1] if samples else {"t": 0.0, "done": 0}
    span = now - previous["t"]
    rate = (done - previous["done"]) / span if span > 0 else 0.0
    sample = {
        "t": round(now, 2),
        "done": done,
        "waiting": waiting,
        "running": running,
        "rate": round(rate),
        "total_mb": round(stats.total_mb, 1),
        "heap_mb": round(stats.heap_bytes / MB, 1),
        "index_mb": round(stats.index_bytes / MB, 1),
        "live_rows": stats.live_rows,
        "dead_rows": stats.dead_rows,
        "autovacuums": stats.autovacuums,
        "vacuum_running": stats.vacuum_running,
    }
    samples.append(sample)
    share = 100 * done / args.jobs
    print(
        f"[{mode} {share:5.1f}%] {done:>9,}/{args.jobs:,} jobs done  {rate / 1000:5.1f}k jobs/s"
        f"  table {stats.total_mb:7.1f} MB  dead rows {stats.dead_rows:>9,}"
        f"  autovacuums {stats.autovacuums}{' (running)' if stats.vacuum_running else ''}"
        f"  {now:6.0f} s",
        file=sys.stderr,
        flush=True,
    )


def _tenths(samples: list[dict[str, Any]], jobs: int) -> list[int]:
    """Jobs per second over each tenth of the jobs: when the done count crossed
    each tenth, interpolated between the two samples around it."""
    step = jobs / 10
    crossed = [0.0]
    for before, after in itertools.pairwise(samples):
        while len(crossed) < 11 and after["done"] >= step * len(crossed):
            mark = step * len(crossed)
            share = (mark - before["done"]) / max(after["done"] - before["done"], 1)
            crossed.append(before["t"] + share * (after["t"] - before["t"]))
    return [round(step / (b - a)) for a, b in itertools.pairwise(crossed)]


async def _count(dsn: str, where: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (
            await conn.execute(f"SELECT count(*) FROM pgqueue_jobs WHERE {where}")
        ).fetchone()
        assert row is not None
        return int(row[0])


async def _vacuum(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("VACUUM pgqueue_jobs")


def report(results: list[dict[str, Any]]) -> str:
    header = ["retention", "autovacuum", "jobs", "s", "table max (MB)", "table at end (MB)",
              "after VACUUM (MB)", "autovacuums", "first 10% (jobs/s)", "last 10% (jobs/s)",
              "slowest tenth", "fastest tenth"]  # fmt: skip
    rows = []
    for r in results:
        rates = r["rate_per_tenth"]
        rows.append([
            r["retention"], "tuned" if r["settings"] else "stock", f"{r['jobs']:,}", f"{r['seconds']:.0f}", f"{r['max_total_mb']:.1f}",
            f"{r['end_total_mb']:.1f}", f"{r['after_vacuum_total_mb']:.1f}",
            str(r["autovacuums"]), f"{rates[0]:,}", f"{rates[-1]:,}",
            f"{min(rates):,}", f"{max(rates):,}",
        ])  # fmt: skip
    return format_table(header, rows)


def _label(result: dict[str, Any]) -> str:
    tuned = "autovacuum tuned" if result["settings"] else "stock autovacuum"
    return f"{result['retention']}, {tuned}"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (size, rate) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    colours = {mode: f"C{n}" for n, mode in enumerate(MODES)}
    for r in results:
        done = [s["done"] / 1e6 for s in r["samples"]]
        style = {"color": colours[r["mode"]], "linestyle": "--" if r["settings"] else "-"}
        label = _label(r)
        size.plot(done, [s["total_mb"] for s in r["samples"]], label=label, **style)
        rate.plot(done, [s["rate"] / 1000 for s in r["samples"]], label=label, **style)
    size.set_ylabel("pg_total_relation_size (MB)")
    rate.set_ylabel("drain rate (k jobs/s)")
    rate.set_xlabel("jobs done (millions)")
    size.set_title(f"{results[0]['jobs']:,} no-op jobs through one worker")
    for axes in (size, rate):
        axes.grid(alpha=0.3)
    size.legend(fontsize="small")
    rate.set_ylim(bottom=0)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2_000_000)
    parser.add_argument("--retention", nargs="+", choices=sorted(MODES), default=["successful"])
    parser.add_argument("--backlog", type=int, default=50_000, help="jobs kept waiting")
    parser.add_argument("--batch", type=int, default=10_000, help="jobs per batch_defer")
    parser.add_argument(
        "--prune-every", type=int, default=10, help="seconds, for --retention prune"
    )
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--setting", action="append", default=[],
                        help="a server setting, e.g. autovacuum_naptime=10s (repeatable)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("bench-results/soak.json"))
    parser.add_argument("--plot", type=Path, default=Path("bench-results/soak.png"))
    parser.add_argument("--replot", type=Path, nargs="+", metavar="JSON",
                        help="run nothing: report and plot these results (of earlier runs) together")  # fmt: skip
    args = parser.parse_args(argv)
    if args.replot:
        replotted = [r for path in args.replot for r in json.loads(path.read_text())]
        plot(replotted, args.plot)
        print(report(replotted))
        return 0
    if args.jobs < 10:
        parser.error("--jobs: at least 10 (the rate is given per tenth)")
    if not 1 <= args.prune_every <= 59:
        parser.error("--prune-every: 1 to 59 seconds")

    results = []
    for mode in args.retention:
        began = time.monotonic()
        results.append(asyncio.run(soak(mode, args)))
        print(f"{mode}: {time.monotonic() - began:.0f} s in all", file=sys.stderr, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.plot)
    print(report(results))
    failed = [
        r["mode"] for r in results if r["ran"] != r["jobs"] or r["repeats"] or r["unfinished"]
    ]
    if failed:
        print(f"FAILED: jobs lost, repeated or unfinished in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
