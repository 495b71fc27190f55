"""How each operation is measured, the same way for every subject.

Each measurement gets a brand-new database (dropped afterwards) on one server,
and the subject's schema:

* ``enqueue_one``: ``jobs`` calls of ``defer_one``, each awaited before the next;
* ``enqueue_batch``: one ``defer_batch`` of ``jobs`` jobs;
* ``drain``: ``jobs`` jobs waiting, one worker *process*
  (:mod:`pgqueue_ref.bench.child`) runs them all; timed in that process from
  the start of its run until it has drained the queue;
* ``latency``: a listening worker process, idle; jobs deferred one at a time
  with a small gap; latency = when the job started (seen by the task) minus
  when the defer call started;
* ``memory``: a long drain, sampling the worker's resident memory.

Both clients warm up with a few jobs before the clock starts (connections,
prepared statements). Every drain and latency run checks that each job ran
exactly once and that the queue holds no unfinished job afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
from psycopg import sql

from .. import embedded
from ..exceptions import PgQueueError
from .subject import Subject

__all__ = [
    "BenchError",
    "Check",
    "MemoryCurve",
    "Sizes",
    "drain",
    "drain_processes",
    "enqueue_batch",
    "enqueue_one",
    "fresh_database",
    "fresh_database_with",
    "latency",
    "memory",
]

WARM_UP = 10
LOAD_CHUNK = 10_000


class BenchError(PgQueueError):
    """A subject failed a measurement or one of its checks."""


@dataclass(frozen=True)
class Sizes:
    one_by_one: int = 1000
    batch: int = 10_000
    drain: int = 10_000
    latency_samples: int = 200
    latency_gap: float = 0.01  # seconds between a job's start and the next defer
    latency_budget: float = 30.0  # seconds: fewer samples for a subject slower than that
    memory: int = 50_000
    producer_jobs: int = 3000  # per kind and round, spread over the producers
    producers: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    scaling_jobs: int = 20_000
    processes: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True)
class Check:
    """What a worker run did: every job once, none left."""

    subject: str
    operation: str
    expected: int
    runs: int
    distinct: int
    unfinished: int

    @property
    def ok(self) -> bool:
        return self.runs == self.distinct == self.expected and self.unfinished == 0

    def __str__(self) -> str:
        return (
            f"{self.subject}, {self.operation}: {self.runs} runs of {self.distinct} distinct jobs "
            f"for {self.expected} deferred, {self.unfinished} left unfinished"
        )


@dataclass
class MemoryCurve:
    """Resident memory of a worker process over one long drain."""

    subject: str
    jobs: int
    seconds: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s, bytes, jobs done)

    def at_fraction(self, fraction: float) -> int:
        """RSS at the first sample where ``fraction`` of the jobs were done."""
        for _, rss, done in self.samples:
            if done >= fraction * self.jobs:
                return rss
        return self.samples[-1][1]

    @property
    def start(self) -> int:
        return self.at_fraction(0.1)  # after the first batches: pools and buffers are there

    @property
    def end(self) -> int:
        return self.samples[-1][1]

    @property
    def peak(self) -> int:
        return max(rss for _, rss, _ in self.samples)


# -- databases ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_database(subject: Subject) -> AsyncIterator[str]:
    """A new database with the subject's schema; dropped afterwards."""
    async with fresh_database_with(subject.setup) as dsn:
        yield dsn


@contextlib.asynccontextmanager
async def fresh_database_with(setup: Callable[[str], Awaitable[None]]) -> AsyncIterator[str]:
    """A new database, ``setup(dsn)`` run on it; dropped afterwards."""
    server = embedded.default_dsn()
    name = f"bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = embedded._with_dbname(server, name)
    try:
        await setup(dsn)
        yield dsn
    finally:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- enqueueing -----------------------------------------------------------------------


async def enqueue_one(subject: Subject, jobs: int) -> float:
    """jobs/s, deferring one by one."""
    async with fresh_database(subject) as dsn:
        if subject.async_client is not None:
            async with subject.async_client(dsn) as client:
                for n in range(-WARM_UP, 0):
                    await client.defer_one(n)
                started = time.perf_counter()
                for n in range(jobs):
                    await client.defer_one(n)
                return jobs / (time.perf_counter() - started)
        return await asyncio.to_thread(_enqueue_one_sync, subject, dsn, jobs)


def _enqueue_one_sync(subject: Subject, dsn: str, jobs: int) -> float:
    assert subject.sync_client is not None
    with subject.sync_client(dsn) as client:
        for n in range(-WARM_UP, 0):
            client.defer_one(n)
        started = time.perf_counter()
        for n in range(jobs):
            client.defer_one(n)
        return jobs / (time.perf_counter() - started)


async def enqueue_batch(subject: Subject, jobs: int) -> float:
    """jobs/s, deferring all jobs in one batch."""
    async with fresh_database(subject) as dsn:
        if subject.async_client is not None:
            async with subject.async_client(dsn) as client:
                await client.defer_batch(range(-WARM_UP, 0))
                started = time.perf_counter()
                await client.defer_batch(range(jobs))
                return jobs / (time.perf_counter() - started)
        return await asyncio.to_thread(_enqueue_batch_sync, subject, dsn, jobs)


def _enqueue_batch_sync(subject: Subject, dsn: str, jobs: int) -> float:
    assert subject.sync_client is not None
    with subject.sync_client(dsn) as client:
        client.defer_batch(range(-WARM_UP, 0))
        started = time.perf_counter()
        client.defer_batch(range(jobs))
        return jobs / (time.perf_counter() - started)


async def _load(subject: Subject, dsn: str, jobs: int) -> None:
    assert subject.async_client is not None
    async with subject.async_client(dsn) as client:
        for first in range(0, jobs, LOAD_CHUNK):
            await client.defer_batch(range(first, min(jobs, first + LOAD_CHUNK)))


# -- worker processes -----------------------------------------------------------------


class _Child:
    """A worker process and its JSON-lines conversation."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: IO[bytes], name: str) -> None:
        self.process, self.stderr, self.name = process, stderr, name

    @classmethod
    def start(cls, subject: Subject, dsn: str, *args: str) -> AbstractAsyncContextManager[_Child]:
        """A worker process of ``subject`` (:mod:`.child`)."""
        return cls.start_module(
            "pgqueue_ref.bench.child", subject.name, dsn, *args, name=subject.name
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def start_module(
        cls, module: str, *args: str, name: str | None = None
    ) -> AsyncIterator[_Child]:
        """``python -m module *args``, killed on the way out if still running."""
        with tempfile.TemporaryFile() as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
            child = cls(process, stderr, name or f"{module} {args[0]}")
            try:
                yield child
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def message(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            self.process.send_signal(signal.SIGUSR1)  # the child prints its tasks' stacks
            await asyncio.sleep(1)
            raise BenchError(
                f"{self.name}: its worker said nothing for {timeout:.0f}s; its tasks:\n"
                + self._stderr_tail(30_000)
            ) from None
        if not line:
            await self.process.wait()
            raise BenchError(
                f"{self.name}: its worker process exited ({self.process.returncode}):\n"
                + self._stderr_tail()
            )
        message: dict[str, Any] = json.loads(line)
        return message

    def _stderr_tail(self, chars: int = 3000) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-chars:]

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.process.stdin.wait_closed()

    async def exit(self) -> None:
        if await self.process.wait() != 0:
            raise BenchError(
                f"{self.name}: worker exited {self.process.returncode}:\n{self._stderr_tail()}"
            )


async def _check(
    subject: Subject, operation: str, dsn: str, expected: int, report: dict[str, Any]
) -> Check:
    check = Check(
        subject.name,
        operation,
        expected,
        report["runs"],
        report["distinct"],
        await subject.unfinished(dsn),
    )
    if not check.ok:
        raise BenchError(f"check failed: {check}")
    return check


async def _drain_once(
    subject: Subject, jobs: int, rss_every: float
) -> tuple[dict[str, Any], Check]:
    async with fresh_database(subject) as dsn:
        await _load(subject, dsn, jobs)
        async with _Child.start(subject, dsn, "drain", str(jobs), str(rss_every)) as child:
            await child.message()  # ready
            child.send("go")
            report = await child.message(timeout=max(120.0, jobs / 100))
            await child.exit()
        return report, await _check(subject, "drain", dsn, jobs, report)


async def drain(subject: Subject, jobs: int) -> tuple[float, Check]:
    """jobs/s of one worker process draining ``jobs`` waiting jobs."""
    report, check = await _drain_once(subject, jobs, rss_every=0.1)
    return jobs / (report["finished"] - report["started"]), check


async def memory(subject: Subject, jobs: int) -> tuple[MemoryCurve, Check]:
    report, check = await _drain_once(subject, jobs, rss_every=0.25)
    seconds = report["finished"] - report["started"]
    return MemoryCurve(subject.name, jobs, seconds, [tuple(s) for s in report["rss"]]), check


async def latency(
    subject: Subject, samples: int, gap: float, budget: float
) -> tuple[float, float, Check]:
    """(p50, p95) in ms from the defer call's start to the job's start, idle listening worker.

    Stops early, with fewer samples, once ``budget`` seconds have passed (a subject whose
    jobs start a second late would otherwise take minutes)."""
    assert subject.async_client is not None
    async with fresh_database(subject) as dsn, _Child.start(subject, dsn, "serve") as child:
        await child.message()  # ready
        latencies: list[float] = []
        deadline = time.monotonic() + budget
        async with subject.async_client(dsn) as client:
            for n in range(-1, samples):  # job -1 warms up the whole path, and is not counted
                if time.monotonic() > deadline and len(latencies) >= 2:
                    break
                await asyncio.sleep(gap)
                started = time.monotonic()
                await client.defer_one(n)
                message = await child.message(timeout=60.0)
                if message.get("start") != n:
                    raise BenchError(f"{subject.name}: expected job {n} to start, got {message}")
                if n >= 0:
                    latencies.append((message["t"] - started) * 1000)
        await child.close_stdin()
        report = await child.message()
        await child.exit()
        check = await _check(subject, "latency", dsn, len(latencies) + 1, report)
    cuts = statistics.quantiles(latencies, n=20, method="inclusive")
    return statistics.median(latencies), cuts[18], check


async def drain_processes(subject: Subject, jobs: int, processes: int) -> tuple[float, Check]:
    """jobs/s of ``processes`` worker processes draining ``jobs`` waiting jobs together,
    from the first one's start to the last one's end.

    Every job ran exactly once: each process counts its own repeats, and the runs of
    all of them add up to ``jobs`` with none left unfinished, so no job can have run
    in two processes (it would leave another job that never ran, yet is finished)."""
    async with fresh_database(subject) as dsn:
        await _load(subject, dsn, jobs)
        async with contextlib.AsyncExitStack() as stack:
            children = [
                await stack.enter_async_context(
                    _Child.start(subject, dsn, "drain", str(jobs), "1.0")
                )
                for _ in range(processes)
            ]
            for child in children:
                await child.message()  # ready
            for child in children:
                child.send("go")
            reports = [await child.message(timeout=max(120.0, jobs / 100)) for child in children]
            for child in children:
                await child.exit()
        total = {
            "runs": sum(r["runs"] for r in reports),
            "distinct": sum(r["distinct"] for r in reports),
        }
        check = await _check(subject, f"drain, {processes} processes", dsn, jobs, total)
    seconds = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    return jobs / seconds, check
