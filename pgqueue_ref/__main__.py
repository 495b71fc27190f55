"""The command line: ``python -m pgqueue_ref <command>`` (also ``pgqueue-ref``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pgqueue_ref",
        description="pgqueue_ref: a PostgreSQL job queue, written to be read.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="defer a few hundred jobs and run them, on a throwaway PostgreSQL",
        description="Start a throwaway PostgreSQL (unless PGQUEUE_REF_DSN is set), defer jobs "
        "one by one and in batches, run a worker until they are done, print a summary.",
    )
    demo.add_argument("--jobs", type=_positive, default=300, help="how many jobs (default 300)")

    bench = commands.add_parser(
        "bench",
        help="measure pgqueue_ref beside procrastinate, PgQueuer and a minimal SQL loop",
        description="On fresh databases of one PostgreSQL with stock settings, measure for every "
        "installed subject: enqueue one by one, batch enqueue, drain by one worker process, "
        "defer-to-start latency, and the worker's memory over a long drain. Prints medians with "
        "min-max and the ratios between subjects; writes JSON, a Markdown table and a plot. "
        'procrastinate and PgQueuer join when installed (pip install -e ".[bench]").',
    )
    bench.add_argument(
        "--jobs",
        type=_positive,
        default=10_000,
        help="jobs per batch and drain run (default 10000)",
    )
    bench.add_argument(
        "--one-by-one-jobs",
        type=_positive,
        default=1000,
        help="jobs per one-by-one run (default 1000)",
    )
    bench.add_argument(
        "--latency-samples",
        type=_positive,
        default=200,
        help="jobs per latency run (default 200)",
    )
    bench.add_argument(
        "--memory-jobs",
        type=_positive,
        default=50_000,
        help="jobs drained while the worker's memory is sampled (default 50000)",
    )
    bench.add_argument(
        "--repeat", type=_positive, default=3, help="repetitions of each measurement (default 3)"
    )
    bench.add_argument(
        "--subjects",
        nargs="+",
        metavar="TEXT",
        help="only the subjects whose name contains one of these (default: all installed)",
    )
    bench.add_argument(
        "--operations",
        nargs="+",
        choices=["enqueue_one", "enqueue_batch", "drain", "latency", "memory"],
        default=["enqueue_one", "enqueue_batch", "drain", "latency", "memory"],
        help="what to measure (default: all)",
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=Path("bench-results/bench.json"),
        help="JSON results; a Markdown table is written beside it (default bench-results/bench.json)",
    )
    bench.add_argument(
        "--plot",
        type=Path,
        default=Path("bench-results/benchmarks.png"),
        help="the plot, as PNG (default bench-results/benchmarks.png)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from .demo import run_demo

        logging.getLogger("pgqueue_ref.worker").setLevel(
            logging.CRITICAL
        )  # its failures are on purpose
        run_demo(jobs=args.jobs)
    elif args.command == "bench":
        from .bench import Sizes, run_bench

        results = run_bench(
            sizes=Sizes(
                one_by_one=args.one_by_one_jobs,
                batch=args.jobs,
                drain=args.jobs,
                latency_samples=args.latency_samples,
                memory=args.memory_jobs,
            ),
            repeat=args.repeat,
            subjects=args.subjects,
            operations=args.operations,
            output=args.output,
            plot=args.plot,
            command=" ".join(["python -m pgqueue_ref", *(argv or sys.argv[1:])]),
        )
        return 1 if results.failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
