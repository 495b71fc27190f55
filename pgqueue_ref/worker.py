"""The worker engine: claims jobs in batches, runs them, records outcomes in batches.

Both faces run this same loop; each supplies a :class:`JobHandler` that says
what running a job means (the App face calls a task with its JSON arguments,
the Queue face calls an entrypoint with the job). Its parts::

    listener ──wake──▶ fetcher ──claimed jobs──▶ buffer ──▶ runners (× concurrency)
                         ▲  one fetch_jobs per batch            │
                         │                                      ▼ outcomes
    heartbeat (own row; hands back dead workers' jobs)    flusher ── one finish_jobs per batch

* **Fetcher.** Claims jobs in one ``fetch_jobs`` round trip (``FOR UPDATE
  SKIP LOCKED``), keeps them in a local buffer, and claims more when the
  buffer runs low. Jobs per round trip decide drain speed; how many to keep
  in hand adapts to how fast the jobs go (:mod:`pgqueue_ref.claim_size`),
  unless ``prefetch`` fixes it.
* **Runners.** ``concurrency`` coroutines take jobs from the buffer. Async
  tasks run on the event loop; sync tasks in a thread pool of the same size.
* **Flusher.** Outcomes (succeeded, failed, retry) wait in a list and are
  written by one ``finish_jobs`` statement every ``flush_interval`` seconds.
  If the worker dies first, those jobs run again:
  the queue promises "at least once", never "at most once".
* **Listener.** LISTEN on the ``pgqueue_ref`` channel (or ``channel=``); a NOTIFY for one of our
  queues wakes the fetcher at once. Without it (or while it reconnects) the
  fetcher polls every ``polling_interval`` seconds.
* **Heartbeat.** Our row in ``pgqueue_workers`` is refreshed every
  ``heartbeat_interval`` seconds; jobs of workers silent for ``stalled_after``
  seconds go back to the queue.

Stopping (``stop()``, task cancellation, SIGTERM in the CLI) is graceful:
no more fetching, claimed-but-unstarted jobs are handed back, running jobs
get ``shutdown_timeout`` seconds to finish, outcomes are flushed.
With ``wait=False`` the worker stops by itself once no job is ready: the
"drain" mode notebooks and tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .claim_size import ClaimSize
from .connectors import AsyncConnector, require_async
from .exceptions import (
    ConfigurationError,
    ConnectionFailed,
    ConnectorException,
    InvalidQueueName,
    JobAborted,
    PgQueueError,
    TaskNotFound,
)
from .jobs import Face, Job, Status
from .manager import JobManager, Outcome
from .names import identifier
from .retry import RetryStrategy
from .sql import CHANNEL

__all__ = ["JobHandler", "Runnable", "Worker", "WorkerStats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runnable:
    """What running one job means: call ``func(*args, **kwargs)``."""

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    is_async: bool = False
    retry: RetryStrategy | None = None


class JobHandler(Protocol):
    """A face's part in running a job. Raises TaskNotFound for an unknown name."""

    def prepare(self, job: Job) -> Runnable: ...


@dataclass
class WorkerStats:
    """What one run of a worker did."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    handed_back: int = 0
    # Rare, and left out of the repr that notebooks show after every drain.
    aborted: int = field(default=0, repr=False)

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.aborted


class Worker:
    """Runs the jobs of one face, see the module docstring for its parts.

    Made by ``app.worker(...)`` (or the Queue face's consumer); ``await
    worker.run()`` runs it and returns its :class:`WorkerStats`; ``stop()``
    asks for a graceful stop. The options: ``queues`` and ``task_names``
    narrow what it fetches (None: all of its face); ``concurrency`` jobs run
    at once; ``prefetch`` jobs at most are claimed but not yet started;
    ``wait=False`` stops once no job is ready; ``listen=False`` relies on
    polling alone; the intervals and timeouts are in seconds
    (``listen_check_timeout``: how long a new LISTEN has to hear the worker's
    own test notification before the worker warns that it is deaf).
    """

    def __init__(
        self,
        *,
        manager: JobManager,
        face: Face,
        handler: JobHandler,
        queues: Sequence[str] | None = None,
        task_names: Sequence[str] | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        wait: bool = True,
        listen: bool = True,
        polling_interval: float = 1.0,
        flush_interval: float = 0.05,
        heartbeat_interval: float = 5.0,
        stalled_after: float = 30.0,
        shutdown_timeout: float = 30.0,
        listen_check_timeout: float = 2.0,
        name: str | None = None,
        channel: str = CHANNEL,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency={concurrency!r}: a worker runs at least 1 job at a time")
        self.manager = manager
        self.connector: AsyncConnector = require_async(manager.connector, worker=True)
        self.face = face
        self.handler = handler
        self.queues = (
            [identifier("queue", q, InvalidQueueName, "emails") for q in queues]
            if queues is not None
            else None
        )
        self.task_names = list(task_names) if task_names is not None else None
        self.concurrency = concurrency
        # Claimed-but-not-started jobs kept in hand. More per round trip drains
        # faster; fewer leaves more for other workers when jobs are slow.
        # None: adapt to the jobs, starting from `concurrency`.
        self.prefetch = prefetch
        self._claim_size = ClaimSize(prefetch, start=concurrency)
        self.wait = wait
        self.listen = listen
        self.polling_interval = polling_interval
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.stalled_after = stalled_after
        self.shutdown_timeout = shutdown_timeout
        self.listen_check_timeout = listen_check_timeout
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        #: The LISTEN channel: every job insert notifies CHANNEL; the Queue
        #: face may add one of its own (see pgqueue_ref.settings.Channel).
        self.channel = channel
        self.stats = WorkerStats()
        self.worker_id: int | None = None
        #: Set while LISTEN is in place *and* heard the worker's own test notification
        #: (tests wait for it before deferring); clear while the worker only polls.
        self.listening = asyncio.Event()
        self._probe: tuple[str, asyncio.Event] | None = None  # (payload, heard)
        self._listen_check: asyncio.Task[None] | None = None
        self._warned_deaf = False
        self._buffer: deque[tuple[Job, float]] = deque()  # (job, when it was claimed)
        self._outcomes: list[Outcome] = []
        self._busy = 0
        self._stopping = False
        self._wake = asyncio.Event()  # new jobs may be ready in the database
        self._room = asyncio.Event()  # the buffer ran low, or a job ended with it empty
        self._jobs_ready = asyncio.Event()  # the buffer has jobs, or we are stopping
        self._flush_lock = asyncio.Lock()
        self._running_ids: set[int] = set()
        self._flushing: list[Outcome] = []  # the batch being written right now
        self._orphans_possible = False  # a claim may have committed without our knowing
        self._fatal: PgQueueError | None = None  # a misconfiguration found while running
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ---------------------------------------------------------------

    async def run(self) -> WorkerStats:
        """Run until stopped (``wait=True``) or until no job is ready (``wait=False``)."""
        self._loop = asyncio.get_running_loop()
        await self._register()
        background = [asyncio.create_task(self._flush_forever(), name="pgqueue_ref-flusher")]
        if self.heartbeat_interval > 0:
            background.append(
                asyncio.create_task(self._heartbeat_forever(), name="pgqueue_ref-heartbeat")
            )
        if self.listen and self.wait:
            background.append(
                asyncio.create_task(self._listen_forever(), name="pgqueue_ref-listener")
            )
        runners = [
            asyncio.create_task(self._run_jobs(), name=f"pgqueue_ref-runner-{i}")
            for i in range(self.concurrency)
        ]
        logger.info(
            "worker %s (id %s) started: face=%s queues=%s",
            self.name,
            self.worker_id,
            self.face,
            self.queues,
        )
        try:
            await self._fetch_until_stopped()
        finally:
            # Also on cancellation: shut down gracefully, then let it propagate.
            await asyncio.shield(self._shutdown(runners, background))
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _register(self, attempts: int = 6) -> None:
        """Register our worker row (and recover dead workers' jobs). A connection
        killed at that moment is retried, like any other; a database that stays
        unreachable is an error after about 3 s."""
        for attempt in range(attempts):
            try:
                if self.worker_id is None:
                    self.worker_id = await self.manager.register_worker_async(self.name)
                await self.manager.requeue_stalled_async(self.stalled_after)
                return
            except ConnectorException as error:
                if attempt == attempts - 1:
                    raise
                logger.warning("could not register the worker (%s); retrying", error)
                await asyncio.sleep(0.1 * 2**attempt)

    def stop(self) -> None:
        """Ask for a graceful stop. Safe to call from any thread."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._request_stop)
        else:
            self._request_stop()

    # -- fetcher --------------------------------------------------------------

    def _request_stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._room.set()
        self._jobs_ready.set()

    async def _fetch_until_stopped(self) -> None:
        """Claim while there is room, and never die of a database error: a lost
        connection is retried with backoff while running jobs go on."""
        backoff = 0.1
        while not self._stopping:
            _stop_if_cancelled()
            try:
                if await self._fetch_once():
                    return
                backoff = 0.1
            except ConnectorException as error:
                if self.connector.connection_lost():
                    # A driver's one connection is the caller's to reopen, not ours.
                    self._fatal = ConnectionFailed(
                        f"{type(self.connector).__name__} lost the connection it wraps ({error}); "
                        "a driver cannot reopen a connection it was handed: connect again and "
                        "build a new driver, or use a pool driver, which reconnects. Jobs this "
                        "worker had claimed go back to the queue once its heartbeat is stale."
                    )
                    logger.error("%s", self._fatal)
                    return
                self._orphans_possible = True
                logger.warning(
                    "database error while claiming jobs (%s); retrying in %.1f s", error, backoff
                )
                await _wait(self._wake, backoff)  # stop() sets _wake too
                backoff = min(backoff * 2, 5.0)

    async def _fetch_once(self) -> bool:
        """One step of the fetch loop; True when drain mode is done."""
        if self._orphans_possible:
            await self._release_orphans()
        if len(self._buffer) >= self._claim_size.refill_below:
            self._room.clear()
            await self._room.wait()
            return False
        self._wake.clear()
        if await self._claim():
            return False
        if not self.wait:
            return await self._drained()
        await _wait(self._wake, self.polling_interval)
        return False

    async def _release_orphans(self) -> None:
        assert self.worker_id is not None
        held = {job.id for job, _ in self._buffer} | self._running_ids
        held |= {o.job_id for o in self._outcomes} | {o.job_id for o in self._flushing}
        released = await self.manager.release_orphaned_claims_async(self.worker_id, sorted(held))
        if released:
            logger.warning(
                "handed back %s jobs whose claim was lost with the connection", len(released)
            )
        self._orphans_possible = False

    async def _claim(self) -> int:
        assert self.worker_id is not None
        limit = max(1, self._claim_size.before_claim() - len(self._buffer))
        jobs = await self.manager.fetch_async(
            self.face, self.worker_id, limit, self.queues, self.task_names
        )
        self._claim_size.after_claim(limit, len(jobs))
        if jobs:
            now = time.monotonic()
            self._buffer.extend((job, now) for job in jobs)
            self._jobs_ready.set()
        return len(jobs)

    async def _drained(self) -> bool:
        """Drain mode: nothing was ready. Done, unless running jobs may still
        produce work (a retry) — then wait for one to finish and look again."""
        if self._busy or self._buffer:
            self._room.clear()
            await self._room.wait()
            return False
        await self._flush()  # retries become visible to the next fetch
        return not await self._claim()

    # -- runners --------------------------------------------------------------

    async def _run_jobs(self) -> None:
        buffer, claim_size = self._buffer, self._claim_size
        while not self._stopping:
            if not buffer:
                self._jobs_ready.clear()
                await self._jobs_ready.wait()
                continue
            job, claimed_at = buffer.popleft()
            claim_size.started(time.monotonic() - claimed_at)
            if len(buffer) < claim_size.refill_below:
                self._room.set()  # time to claim more
            self._busy += 1
            self._running_ids.add(job.id)
            try:
                outcome = await self._run_one(job)
            except asyncio.CancelledError:
                self._record(
                    Outcome(job.id, Status.TODO, error="interrupted: the worker was shut down")
                )
                raise
            finally:
                self._busy -= 1
                self._running_ids.discard(job.id)
                if not buffer:
                    self._room.set()  # drain mode: this may have been the last job
            self._record(outcome)

    async def _run_one(self, job: Job) -> Outcome:
        try:
            runnable = self.handler.prepare(job)
        except TaskNotFound as error:
            logger.error("job %s failed: %s", job.id, error)
            return Outcome(job.id, Status.FAILED, error=str(error))
        try:
            if runnable.is_async:
                await runnable.func(*runnable.args, **runnable.kwargs)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    self._thread_pool(),
                    functools.partial(runnable.func, *runnable.args, **runnable.kwargs),
                )
        except JobAborted as error:
            logger.info("job %s (%s) aborted on request", job.id, job.task_name)
            return Outcome(job.id, Status.ABORTED, error=str(error) or "aborted on request")
        except Exception as error:  # noqa: BLE001 - whatever a task raises fails its job, never the worker
            return self._failure(job, runnable.retry, error)
        return Outcome(job.id, Status.SUCCEEDED)

    def _failure(self, job: Job, retry: RetryStrategy | None, error: Exception) -> Outcome:
        text = "".join(traceback.format_exception_only(error)).strip()
        retry_in = retry.retry_in(job.attempts, error) if retry is not None else None
        if retry_in is None:
            logger.error(
                "job %s (%s) failed on attempt %s: %s",
                job.id,
                job.task_name,
                job.attempts,
                text,
                exc_info=error,
            )
            return Outcome(job.id, Status.FAILED, error=text)
        logger.warning(
            "job %s (%s) failed on attempt %s, retrying in %ss: %s",
            job.id,
            job.task_name,
            job.attempts,
            retry_in,
            text,
        )
        return Outcome(job.id, Status.TODO, error=text, retry_in=retry_in)

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="pgqueue_ref-task"
            )
        return self._executor

    # -- outcomes -------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        stats = self.stats
        if outcome.handed_back:
            stats.handed_back += 1
        elif outcome.status is Status.SUCCEEDED:
            stats.succeeded += 1
        elif outcome.status is Status.TODO:
            stats.retried += 1
        elif outcome.status is Status.ABORTED:
            stats.aborted += 1
        else:
            stats.failed += 1
        self._outcomes.append(outcome)

    async def _flush(self) -> None:
        async with self._flush_lock:
            batch, self._outcomes = self._outcomes, []
            self._flushing = batch
            try:
                assert self.worker_id is not None
                await self.manager.finish_async(batch, self.worker_id)
            except BaseException:
                self._outcomes[:0] = batch  # keep them for the next flush: nothing is lost
                raise
            finally:
                self._flushing = []

    async def _flush_forever(self) -> None:
        while True:
            _stop_if_cancelled()
            await asyncio.sleep(self.flush_interval)
            try:
                await self._flush()
            except PgQueueError as error:
                logger.warning("could not record job outcomes, will retry: %s", error)

    # -- listener and heartbeat ----------------------------------------------

    def _on_notify(self, payload: str) -> None:
        face, _, queue = payload.partition(":")
        if face == self.face and (self.queues is None or queue in self.queues):
            self._in_loop(self._wake.set)
        elif self._probe is not None and payload == self._probe[0]:
            self._in_loop(self._probe[1].set)

    def _on_listening(self) -> None:
        self._in_loop(self._start_listen_check)

    def _start_listen_check(self) -> None:
        if self._listen_check is not None:
            self._listen_check.cancel()
        self._listen_check = asyncio.create_task(
            self._check_listen(), name="pgqueue_ref-listen-check"
        )

    async def _check_listen(self) -> None:
        """A LISTEN that is in place may still hear nothing: notify ourselves, and
        count as listening only once that notification comes back."""
        payload, heard = f"probe:{secrets.token_hex(8)}", asyncio.Event()
        self._probe = (payload, heard)
        try:
            await self.manager.notify_probe_async(self.channel, payload)
            async with asyncio.timeout(self.listen_check_timeout):
                await heard.wait()
        except TimeoutError:
            log = logger.debug if self._warned_deaf else logger.warning
            self._warned_deaf = True
            log(
                "the worker's LISTEN on channel %r hears nothing: its own test notification "
                "did not come back within %s s. A transaction pooler (PgBouncer in transaction "
                "mode, Supavisor, RDS Proxy) between the worker and the server does this: the "
                "LISTEN's server connection goes back to the pool. Jobs still run, found by "
                "polling every %s s. Fix: give the connector listen_dsn=<a DSN direct to the "
                "server, or to a session-mode pool> for its LISTEN connection, or listen=False "
                "to poll on purpose.",
                self.channel,
                self.listen_check_timeout,
                self.polling_interval,
            )
        except PgQueueError as error:
            logger.warning("could not check that LISTEN hears (%s); polling meanwhile", error)
        else:
            self.listening.set()
        finally:
            self._probe = None

    def _in_loop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` in our loop: at once from its own thread (asyncpg calls back
        there), else through ``call_soon_threadsafe``, whose wake-up costs a system call."""
        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)

    async def _listen_forever(self) -> None:
        delay = 0.1
        # listen_async runs until its connection is lost: whether it ever got to LISTEN
        # (not whether this is its first call) tells a bad listen_dsn from an outage.
        listened = False

        def on_listening() -> None:  # may be called from the driver's thread
            nonlocal listened
            listened = True
            self._on_listening()

        while True:
            _stop_if_cancelled()
            try:
                await self.connector.listen_async(self.channel, self._on_notify, on_listening)
            except ConfigurationError as error:
                # Retrying cannot help (e.g. a pool with no room for LISTEN): stop, and say why.
                logger.error("the worker cannot LISTEN: %s", error)
                self._fatal = error
                self._request_stop()
                return
            except ConnectionFailed as error:
                if not listened and self.connector.listen_dsn is not None:
                    # A listen_dsn that never connected is a setting to fix, not an outage
                    # to wait out: say so now rather than poll in silence.
                    self._fatal = ConnectionFailed(f"listen_dsn cannot connect: {error}")
                    logger.error("the worker cannot LISTEN: %s", self._fatal)
                    self._request_stop()
                    return
                logger.warning("LISTEN connection lost (%s); polling until it is back", error)
            except PgQueueError as error:
                logger.warning("LISTEN connection lost (%s); polling until it is back", error)
            self.listening.clear()
            if self._listen_check is not None:
                self._listen_check.cancel()
            self._wake.set()  # notifications may have been missed: look now
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _heartbeat_forever(self) -> None:
        while True:
            _stop_if_cancelled()
            await asyncio.sleep(self.heartbeat_interval)
            try:
                assert self.worker_id is not None
                if not await self.manager.heartbeat_async(self.worker_id):
                    # Silent for longer than stalled_after (cut off from the database):
                    # another worker handed our jobs back. Register again, so that what
                    # we claim from now on is not taken for a dead worker's.
                    old, self.worker_id = (
                        self.worker_id,
                        await self.manager.register_worker_async(self.name),
                    )
                    logger.error("worker %s was presumed dead and its jobs were requeued; "
                                 "registered again as %s", old, self.worker_id)  # fmt: skip
                if await self.manager.requeue_stalled_async(self.stalled_after):
                    self._wake.set()
            except PgQueueError as error:
                logger.warning("heartbeat failed: %s", error)

    # -- shutdown -------------------------------------------------------------

    async def _shutdown(
        self, runners: list[asyncio.Task[None]], background: list[asyncio.Task[None]]
    ) -> None:
        self._request_stop()
        # Claimed but never started: hand them back, attempt not counted.
        while self._buffer:
            job, _ = self._buffer.popleft()
            self._record(Outcome(job.id, Status.TODO, handed_back=True))
        _, late = await asyncio.wait(runners, timeout=self.shutdown_timeout)
        for task in late:
            logger.warning(
                "a job did not finish within shutdown_timeout=%ss; interrupting it",
                self.shutdown_timeout,
            )
            task.cancel()
        if late:
            await asyncio.wait(late)
        if self._listen_check is not None:
            background.append(self._listen_check)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            await self._flush()
            if self.worker_id is not None:
                await self.manager.unregister_worker_async(self.worker_id)
        except PgQueueError as error:
            logger.error(
                "could not record the last outcomes (%s); their jobs will run again", error
            )
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        logger.info("worker %s stopped: %s", self.name, self.stats)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass.

    Not ``asyncio.wait_for(event.wait(), seconds)``: on Python 3.11 it swallows a
    cancellation that arrives in the same loop iteration as the event (it returns
    the event's result instead of raising), and a worker cancelled just as a job
    arrived went on running forever. ``asyncio.timeout`` has no inner task, so
    no such race.
    """
    _stop_if_cancelled()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop and is still going.

    A driver can swallow our cancellation: aiopg waits for every query with
    ``asyncio.wait_for``, which on Python 3.11 returns the query's result when
    the cancel arrives in the same loop iteration as that result. The worker's
    loops call this before each turn and each idle wait, so such a cancel
    stops them one turn late instead of never (a benchmark worker on aiopg hung
    on shutdown about one run in ten before).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
