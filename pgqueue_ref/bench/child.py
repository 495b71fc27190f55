"""The worker process of a benchmark: ``python -m pgqueue_ref.bench.child SUBJECT DSN MODE``.

``drain`` takes two more arguments: how many jobs wait (numbered 0 to
JOBS - 1) and how often to sample memory, in seconds. It talks to the runner in JSON lines: it prints ``{"ready": ...}`` once its
worker is set up, then

* ``drain``: waits for a line on stdin (the jobs are waiting by then), runs
  the worker until the queue is empty, and prints when it started and ended,
  how many jobs ran and how many distinct ones, and its resident memory
  sampled while it ran;
* ``serve``: runs a listening worker, prints ``{"start": n, "t": ...}`` as each
  job starts, and stops gracefully when stdin closes.

Times are ``time.monotonic()``, one clock for every process on the machine.

On SIGUSR1 it prints the stack of every asyncio task to stderr: the runner
sends it to a worker that has said nothing for too long, and shows the stacks
in its error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from .registry import find

__all__ = ["main", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident memory now (Linux), or 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _say(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _sample_rss(
    samples: list[tuple[float, int, int]], runs: RunCounter, every: float
) -> None:
    started = time.monotonic()
    while True:
        samples.append((time.monotonic() - started, rss_bytes(), len(runs)))
        await asyncio.sleep(every)


class RunCounter:
    """The hook of a drain: counts runs and repeats in constant memory (one byte per
    job, allocated up front), so that the memory curve shows the worker, not us."""

    __slots__ = ("_seen", "repeats", "runs")

    def __init__(self, jobs: int) -> None:
        self.runs = self.repeats = 0
        self._seen = bytearray(jobs)

    def __call__(self, n: int) -> None:
        self.runs += 1
        if self._seen[n]:
            self.repeats += 1
        self._seen[n] = 1

    def __len__(self) -> int:
        return self.runs


async def _drain(subject_name: str, dsn: str, jobs: int, rss_every: float) -> None:
    worker_factory = find(subject_name).worker
    assert worker_factory is not None
    runs = RunCounter(jobs)
    samples: list[tuple[float, int, int]] = []
    async with worker_factory(dsn, runs) as worker:
        _say(ready=True, rss=rss_bytes())
        await asyncio.to_thread(sys.stdin.readline)  # "go": the jobs are waiting
        sampler = asyncio.create_task(_sample_rss(samples, runs, rss_every))
        started = time.monotonic()
        await worker.drain()
        finished = time.monotonic()
        sampler.cancel()
        samples.append((finished - started, rss_bytes(), len(runs)))
    _say(
        started=started,
        finished=finished,
        runs=runs.runs,
        distinct=runs.runs - runs.repeats,
        rss=samples,
    )


async def _serve(subject_name: str, dsn: str) -> None:
    worker_factory = find(subject_name).worker
    assert worker_factory is not None
    runs: list[int] = []

    def started(n: int) -> None:
        now = time.monotonic()  # first: what is measured is when the job starts
        runs.append(n)
        _say(start=n, t=now)

    async with worker_factory(dsn, started) as worker:
        serving = asyncio.create_task(worker.serve())
        _say(ready=True, rss=rss_bytes())
        await asyncio.to_thread(sys.stdin.read)  # until the runner closes stdin
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    _say(runs=len(runs), distinct=len(set(runs)))


def _print_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def _explaining(work: Any) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _print_tasks)
    await work


def main(argv: list[str]) -> None:
    subject_name, dsn, mode, *rest = argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if mode == "drain":  # ... drain JOBS RSS_EVERY
        asyncio.run(_explaining(_drain(subject_name, dsn, int(rest[0]), float(rest[1]))))
    elif mode == "serve":
        asyncio.run(_explaining(_serve(subject_name, dsn)))
    else:
        raise SystemExit(f"unknown mode {mode!r}: expected drain or serve")


if __name__ == "__main__":
    main(sys.argv[1:])
