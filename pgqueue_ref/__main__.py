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
        help="measure enqueue and drain throughput, side by side",
        description="Measure enqueue one by one, batch enqueue and drain on fresh databases of one "
        "PostgreSQL with stock settings; print medians with min-max; write JSON.",
    )
    bench.add_argument(
        "--jobs", type=_positive, default=5000, help="jobs per batch/drain run (default 5000)"
    )
    bench.add_argument(
        "--one-by-one-jobs",
        type=_positive,
        default=1000,
        help="jobs per one-by-one run (default 1000)",
    )
    bench.add_argument(
        "--repeat", type=_positive, default=3, help="repetitions of each measurement (default 3)"
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=Path("bench-results/bench.json"),
        help="where to write the JSON results (default bench-results/bench.json)",
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
        from .bench import run_bench

        run_bench(
            jobs=args.jobs,
            one_by_one_jobs=args.one_by_one_jobs,
            repeat=args.repeat,
            output=args.output,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
