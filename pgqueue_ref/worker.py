"""The worker engine: claims jobs in batches, runs them, records outcomes in batches.

Both faces run this same loop; each supplies a :class:`JobHandler` that says
what running a job means (the App face calls a task with its JSON arguments,
the Queue face calls an entrypoint with the job). Its parts::

    listener ──wake──▶ fetcher ──claimed jobs──▶ buffer ──▶ runners (× concurrency)
                         ▲  one fetch_jobs per batch            │
                         │                                      ▼ outcomes
    heartbeat (own row; hands back dead workers' jobs)    flusher ── one finish_jobs per batch
    periodic (wait=True only) ── sleeps until the next cron period, defers or fires it
    fence (own timer) ── no good heartbeat for stalled_after / 2 ──▶ stops fetcher and runners

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
  the queue promises "at least once", never "at most once". With
  ``delete_jobs="successful"`` (or ``"always"``) that same statement deletes
  the jobs that succeeded (or finished) instead of keeping them.
* **Listener.** LISTEN on the ``pgqueue_ref`` channel (or ``channel=``); a NOTIFY for one of our
  queues wakes the fetcher at once. Without it (or while it reconnects) the
  fetcher polls every ``polling_interval`` seconds. An App-face fetcher that
  finds nothing marks itself idle before it sleeps (``go_idle``), and defers
  NOTIFY only while some worker of their queue is so marked: a NOTIFY
  serialises commits, and a busy worker needs none (docs/architecture.md,
  "Wake-ups").
* **Heartbeat.** Our row in ``pgqueue_workers`` is refreshed every
  ``heartbeat_interval`` seconds; jobs of workers silent for ``stalled_after``
  seconds go back to the queue.
* **Periodic.** With ``wait=True`` only, the face's periodic loop
  (:mod:`pgqueue_ref.periodic`, :mod:`pgqueue_ref.schedules`) sleeps until
  the next cron period and defers (App face) or fires (Queue face) it; the
  database makes each period happen once across workers.
* **Fence.** A timer of its own, awaiting no query: when no heartbeat has
  succeeded for ``stalled_after / 2`` seconds (counted from the moment the
  last good one was *sent*), the worker fences itself: it claims nothing,
  abandons its connector's connections (so that a job stuck in a query on the
  cut-off network fails at once), cancels its running async jobs and drops
  the jobs it holds unstarted, recording no outcome for them. Other workers
  requeue them only after ``stalled_after`` seconds, by the database's clock,
  which started no earlier than that send: the fence comes first, with
  ``stalled_after / 2`` to spare. The fence's other half is on the server:
  before requeueing, the worker that found us silent terminates our backends
  (by the ``application_name`` our connector tags them with, registered with
  our row), so that a query we had sent cannot commit after another worker
  started the job. When a heartbeat gets through again the worker registers
  again if it was presumed dead, and claims again.

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
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .claim_size import ClaimSize
from .connectors import AsyncConnector, require_async
from .exceptions import (
    ConfigurationError,
    ConnectionFailed,
    ConnectorException,
    ConnectorNotOpen,
    InvalidQueueName,
    JobAborted,
    PgQueueError,
    TaskNotFound,
)
from .jobs import Face, Job, Status
from .manager import DeleteJobCondition, JobManager, Outcome
from .names import identifier
from .retry import RetryStrategy
from .sql import CHANNEL

__all__ = ["JobHandler", "Runnable", "Worker", "WorkerStats"]

logger = logging.getLogger(__name__)

#: Seconds before a worker whose idle mark did not settle (a defer was in flight)
#: tries again; doubled each time, up to ``polling_interval``.
UNSETTLED_WAIT = 0.002


@dataclass(frozen=True, slots=True)
class Runnable:
    """What running one job means: call ``func(*args, **kwargs)``."""

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    is_async: bool = False
    retry: RetryStrategy | None = None
    #: A failure is held for a manual re-queue, never deleted by ``delete_jobs``
    #: (the Queue face's ``on_failure="hold"``).
    hold: bool = False


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
    #: Jobs given up by a fence: async jobs cancelled, claimed jobs dropped unstarted.
    fenced: int = field(default=0, repr=False)
    #: Times it settled as idle (marked so that defers NOTIFY it) and went to sleep.
    idle_marks: int = field(default=0, repr=False)

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
    own test notification before the worker warns that it is deaf;
    ``shutdown_timeout=None``: running jobs get as long as they take to finish).
    ``delete_jobs`` is procrastinate's retention option: ``"never"`` (the
    default) keeps finished jobs, ``"successful"`` deletes a job once it
    succeeded, ``"always"`` once it finished whatever the outcome; a job that
    will be retried is never deleted. The delete is part of the statement that
    records the outcome, so it costs no extra round trip.
    ``periodic`` is the face's periodic loop (periodic tasks, schedules): it
    runs only in a continuous worker, never in a drain (``wait=False``).
    The worker fences itself after ``stalled_after / 2`` seconds without a
    good heartbeat (see the module docstring), so ``heartbeat_interval`` must
    be at most a quarter of ``stalled_after``; ``heartbeat_interval=0``
    switches both off (a short drain, e.g. a rescue with ``stalled_after=0``).
    """

    #: The fence comes this fraction of ``stalled_after`` after the last good
    #: heartbeat was sent; the rest of ``stalled_after`` is the margin.
    FENCE_FRACTION = 0.5

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
        shutdown_timeout: float | None = 30.0,
        listen_check_timeout: float = 2.0,
        name: str | None = None,
        channel: str = CHANNEL,
        delete_jobs: DeleteJobCondition | str = DeleteJobCondition.NEVER,
        periodic: Callable[[], Coroutine[Any, Any, None]] | None = None,
        task_limits: Mapping[str, int] | None = None,
        stop_when_deaf: bool = False,
        claims_in_flight: int = 1,
    ) -> None:
        if claims_in_flight < 1:
            raise ValueError(f"claims_in_flight={claims_in_flight!r}: at least 1")
        #: Claims sent at once (each its own round trip, on a pool its own connection):
        #: with more than one, what is claimed and held, running or not, stays within
        #: ``concurrency`` (the Queue face: PgQueuer's max_concurrent_tasks, two batches).
        self.claims_in_flight = claims_in_flight
        self._claiming = 0  # claims in flight now
        self._reserved = 0  # the jobs those claims may bring
        self._no_claims = asyncio.Event()  # set while no claim is in flight
        self._no_claims.set()
        self._not_releasing = asyncio.Event()  # clear while orphans are being handed back
        self._not_releasing.set()
        #: Stop (run() raises ConnectionFailed) when the LISTEN is lost or hears nothing,
        #: instead of polling on: PgQueuer's run(shutdown_on_listener_failure=True).
        self.stop_when_deaf = stop_when_deaf
        #: Task name -> the most of its jobs that may run at once across every worker
        #: (0: no limit), enforced by the claim (fetch_jobs_limited); the Queue face's
        #: entrypoint(concurrency_limit=N). None, or no limit above 0: plain claims.
        self.task_limits = (
            dict(task_limits) if task_limits and any(n > 0 for n in task_limits.values()) else None
        )
        self.delete_jobs = DeleteJobCondition.parse(delete_jobs)
        #: The face's periodic loop (pgqueue_ref.periodic), run beside the fetcher
        #: while the worker is continuous (wait=True); None: no periodic tasks.
        self.periodic = periodic
        if concurrency < 1:
            raise ValueError(f"concurrency={concurrency!r}: a worker runs at least 1 job at a time")
        if heartbeat_interval > 0 and heartbeat_interval * 4 > stalled_after:
            raise ConfigurationError(
                f"heartbeat_interval={heartbeat_interval!r} is too long for "
                f"stalled_after={stalled_after!r}: the worker fences itself (stops running "
                f"jobs) after stalled_after / 2 = {stalled_after / 2!r} s without a good "
                "heartbeat, and needs room for a late one. Keep heartbeat_interval at most "
                "stalled_after / 4, or set heartbeat_interval=0 for a short drain that sends "
                "no heartbeats and never fences."
            )
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
        # Wake-ups: a worker that listens on the engine's channel marks itself idle
        # before it sleeps, and defers and enqueues NOTIFY that channel only while
        # such a mark exists (go_idle in queries.sql). A Queue-face consumer on a
        # channel of its own keeps no mark: its Queries notify that channel always.
        # _idle_as: the worker id the mark was made under, or None.
        self._marks_idle = listen and wait and channel == CHANNEL
        self._idle_as: int | None = None
        self._unsettled_wait = UNSETTLED_WAIT
        self.polling_interval = polling_interval
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.stalled_after = stalled_after
        #: Seconds after the last good heartbeat was sent at which the worker fences itself.
        self.fence_after = stalled_after * self.FENCE_FRACTION
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
        self._running = False
        self._done = threading.Event()  # set when run() has returned, seen from any thread
        # Self-fencing. _last_ok_sent: time.monotonic() just before sending the last
        # heartbeat (or registration) that succeeded.
        self._last_ok_sent = 0.0
        #: Set while the worker is fenced: cut off for too long, it runs and claims nothing.
        self.fenced = False
        self._unfenced = asyncio.Event()
        self._unfenced.set()
        # Set while no fenced run is still ending: a cancelled async job may be stuck in
        # a query on the cut-off connection until it heals; claiming before it has ended
        # could hand this worker the same job again while the old run still goes.
        self._fenced_runs_ended = asyncio.Event()
        self._fenced_runs_ended.set()
        self._fence_epoch = 0  # one more at each fence: a claim that spans one is dropped
        self._async_jobs: dict[int, asyncio.Task[None]] = {}  # job id -> the runner awaiting it
        self._fenced_jobs: set[int] = set()  # async jobs whose runner the fence cancelled
        self._late: dict[int, list[Outcome]] = {}  # outcomes under an id we no longer have

    # -- public ---------------------------------------------------------------

    async def run(self) -> WorkerStats:
        """Run until stopped (``wait=True``) or until no job is ready (``wait=False``)."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._done.clear()
        try:
            return await self._run()
        finally:
            self._running, self._loop = False, None
            self._done.set()

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is running."""
        return self._running

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until :meth:`run` has returned (True), or ``timeout`` passed (False).
        For another thread than the worker's; ``await asyncio.to_thread(...)`` in async code."""
        return self._done.wait(timeout)

    async def _run(self) -> WorkerStats:
        await self._register()
        background = [asyncio.create_task(self._flush_forever(), name="pgqueue_ref-flusher")]
        if self.heartbeat_interval > 0:
            background.append(
                asyncio.create_task(self._heartbeat_forever(), name="pgqueue_ref-heartbeat")
            )
            background.append(asyncio.create_task(self._fence_forever(), name="pgqueue_ref-fence"))
        if self.listen and self.wait:
            background.append(
                asyncio.create_task(self._listen_forever(), name="pgqueue_ref-listener")
            )
        if self.periodic is not None and self.wait:
            background.append(asyncio.create_task(self.periodic(), name="pgqueue_ref-periodic"))
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
            await asyncio.gather(
                *(self._fetch_until_stopped() for _ in range(self.claims_in_flight))
            )
        finally:
            # Also on cancellation: shut down gracefully, then let it propagate.
            await asyncio.shield(self._shutdown(runners, background))
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _register(self, attempts: int = 12) -> None:
        """Register our worker row (and recover dead workers' jobs). A connection
        killed at that moment is retried, like any other; a database that stays
        unreachable is an error after about 10 s. (Enough tries for a pool whose every
        connection was killed at once: each try may find another dead one.)"""
        for attempt in range(attempts):
            try:
                if self.worker_id is None:
                    sent = time.monotonic()
                    self.worker_id = await self.manager.register_worker_async(
                        self.name, self.connector.session_tag
                    )
                    self._last_ok_sent = sent
                await self.manager.requeue_stalled_async(self.stalled_after)
                return
            except ConnectorException as error:
                if attempt == attempts - 1:
                    raise
                logger.warning("could not register the worker (%s); retrying", error)
                await asyncio.sleep(min(0.1 * 2**attempt, 1.0))

    def stop(self) -> None:
        """Ask for a graceful stop. Safe to call from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._request_stop)
        else:
            self._request_stop()

    def _stop_if_closed(self, error: PgQueueError) -> bool:
        """A connector closed under a running worker cannot come back: stop, and say so,
        instead of retrying on it forever."""
        if not isinstance(error, ConnectorNotOpen):
            return False
        if self._fatal is None:
            self._fatal = ConnectorNotOpen(
                f"the worker's connector was closed while the worker ran ({error}); the worker "
                "stopped. Jobs it had claimed go back to the queue once its heartbeat is older "
                f"than stalled_after={self.stalled_after}s. Close the app itself "
                "(app.close_async()), which stops its workers gracefully first."
            )
            logger.error("%s", self._fatal)
        self._request_stop()
        return True

    # -- fetcher --------------------------------------------------------------

    def _request_stop(self) -> None:
        self._stopping = True
        self._unfenced.set()
        self._fenced_runs_ended.set()
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
                if self._stop_if_closed(error):
                    return
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
        if self.fenced or not self._fenced_runs_ended.is_set():
            await self._unfenced.wait()  # stop() sets both
            await self._fenced_runs_ended.wait()
            return False
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
        await self._sleep_when_empty()
        return False

    async def _release_orphans(self) -> None:
        # Never while a claim is in flight (claims_in_flight > 1): its jobs are ours but
        # not held yet, and would be handed back as orphans.
        self._not_releasing.clear()
        try:
            await self._no_claims.wait()
            if self._orphans_possible:
                await self._release_orphans_now()
        finally:
            self._not_releasing.set()

    async def _release_orphans_now(self) -> None:
        assert self.worker_id is not None
        # Cleared before the query, not after: a fence (or an error) while it waits drops
        # jobs that `held` still counts, and sets the flag again for the next turn.
        # (Cleared after, the chaos run lost 10 jobs so: a release sent before a server
        # crash went through after it, and the jobs the fence dropped meanwhile stayed
        # 'doing' under a live worker for good.)
        self._orphans_possible = False
        held = {job.id for job, _ in self._buffer} | self._running_ids
        held |= {o.job_id for o in self._outcomes} | {o.job_id for o in self._flushing}
        try:
            released = await self.manager.release_orphaned_claims_async(
                self.worker_id, sorted(held)
            )
        except BaseException:
            self._orphans_possible = True
            raise
        if released:
            logger.warning(
                "handed back %s jobs whose claim was lost with the connection", len(released)
            )

    async def _claim(self) -> int:
        assert self.worker_id is not None
        if self.fenced:  # it may have struck while _fetch_once awaited something else
            return 1  # look again: the loop waits while fenced
        limit = max(1, self._claim_size.before_claim() - len(self._buffer))
        epoch = self._fence_epoch
        jobs = await self._fetch(limit)
        if epoch != self._fence_epoch:
            # The worker fenced itself while this claim hung: by now these jobs are (or
            # will be) requeued and maybe running elsewhere. Never run them; if we were not
            # presumed dead after all, _release_orphans hands them back.
            if jobs:
                logger.warning("dropped %s jobs claimed across a fence", len(jobs))
            self.stats.fenced += len(jobs)
            return len(jobs) or 1  # look again: the loop waits while fenced
        self._claim_size.after_claim(limit, len(jobs))
        held = self._running_ids | {job.id for job, _ in self._buffer}
        if held and (still := [job for job in jobs if job.id in held]):
            # Requeued while we were cut off, and claimed by us again while the old run
            # (a sync job in its thread) still goes, or while it still waits here: never
            # run a job twice at once in one worker. Hand it back for a second from now;
            # the old run's outcome is refused if the job has a new owner.
            for job in still:
                self._record(Outcome(job.id, Status.TODO, retry_in=1.0, handed_back=True))
            logger.warning("handed back %s re-claimed jobs still held here", len(still))
            jobs = [job for job in jobs if job.id not in held]
        if jobs:
            now = time.monotonic()
            self._buffer.extend((job, now) for job in jobs)
            self._jobs_ready.set()
            if self._idle_as is not None:
                await self._mark_busy()
        return len(jobs)

    async def _fetch(self, limit: int) -> list[Job]:
        if self.claims_in_flight == 1:
            return await self._fetch_now(limit)
        # Several claims at once: each takes at most what is left of `concurrency` once
        # the running, the claimed and the other claims in flight are counted.
        while (room := self.concurrency - self._busy - len(self._buffer) - self._reserved) < 1:
            if self._stopping or self.fenced:
                return []
            self._room.clear()
            await self._room.wait()
        await self._not_releasing.wait()
        limit = min(limit, room)
        self._claiming += 1
        self._reserved += limit
        self._no_claims.clear()
        try:
            return await self._fetch_now(limit)
        finally:
            self._claiming -= 1
            self._reserved -= limit
            self._room.set()  # its reservation is free again: claims waiting for room look
            if not self._claiming:
                self._no_claims.set()

    async def _fetch_now(self, limit: int) -> list[Job]:
        assert self.worker_id is not None
        if self.task_limits is not None:
            return await self.manager.fetch_limited_async(
                self.face, self.worker_id, limit, self.task_limits, self.queues
            )
        return await self.manager.fetch_async(
            self.face, self.worker_id, limit, self.queues, self.task_names
        )

    # -- wake-ups (App face): NOTIFY only while a worker sleeps -----------------

    async def _sleep_when_empty(self) -> None:
        """Nothing to claim: sleep until a NOTIFY (or the next poll).

        A worker that listens first marks itself idle (``go_idle``), so that defers
        notify it, and sleeps only once that mark is *settled*: no defer can have
        read the marks before ours went in and still be uncommitted. Then it claims
        once more (a defer that committed meanwhile notified no one) and sleeps. Not
        settled: a defer was in flight; look again after a short, growing wait."""
        if not (self._marks_idle and self.listening.is_set()) or self.fenced:
            await _wait(self._wake, self.polling_interval)
            return
        assert self.worker_id is not None
        worker_id = self.worker_id
        settled = await self.manager.go_idle_async(self.face, worker_id, self.queues)
        if settled is None:  # our row is gone: the heartbeat registers us again
            await _wait(self._wake, self.polling_interval)
            return
        self._idle_as = worker_id
        if not settled:
            await _wait(self._wake, self._unsettled_wait)
            self._unsettled_wait = min(self._unsettled_wait * 2, self.polling_interval)
            return
        self._unsettled_wait = UNSETTLED_WAIT
        self.stats.idle_marks += 1
        if not await self._claim():
            await _wait(self._wake, self.polling_interval)

    async def _mark_busy(self) -> None:
        """A claim brought jobs: defers need not notify us any more. A failure only
        costs needless NOTIFYs until the next mark."""
        worker_id, self._idle_as = self._idle_as, None
        assert worker_id is not None
        try:
            await self.manager.worker_busy_async(worker_id)
        except ConnectorException as error:
            logger.debug("could not unmark the worker as idle (%s)", error)

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
            # Claimed under the id we have now: a fence empties the buffer, and the
            # id changes only while fenced.
            claimed_by = self.worker_id
            self._busy += 1
            self._running_ids.add(job.id)
            try:
                outcome: Outcome | None = await self._run_one(job)
            except asyncio.CancelledError:
                if not self._fenced_by_us(job.id):
                    self._record(
                        Outcome(job.id, Status.TODO, error="interrupted: the worker was shut down")
                    )
                    raise
                if _cancelling():
                    raise  # a stop as well: the job is still its next owner's, record nothing
                outcome = None  # fenced: the job is its next owner's to run, record nothing
            finally:
                self._busy -= 1
                self._running_ids.discard(job.id)
                if not buffer:
                    self._room.set()  # drain mode: this may have been the last job
            if self._fenced_by_us(job.id):
                outcome = None  # it ended as the fence struck
            if outcome is None:
                continue
            if claimed_by != self.worker_id:
                # A sync job that went on in its thread while we were presumed dead:
                # write its outcome under the old id, where the worker_id guard of
                # finish_jobs refuses it if the job has a new owner.
                assert claimed_by is not None
                self._late.setdefault(claimed_by, []).append(outcome)
                continue
            self._record(outcome)

    def _fenced_by_us(self, job_id: int) -> bool:
        """Was this job's runner cancelled by the fence? Then take that cancel back.
        True also when the job ended before the cancel landed."""
        if job_id not in self._fenced_jobs:
            return False
        self._fenced_jobs.discard(job_id)
        if not self._fenced_jobs:
            self._fenced_runs_ended.set()
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    async def _run_one(self, job: Job) -> Outcome:
        try:
            runnable = self.handler.prepare(job)
        except TaskNotFound as error:
            logger.error("job %s failed: %s", job.id, error)
            return Outcome(job.id, Status.FAILED, error=str(error))
        try:
            if runnable.is_async:
                # Where the fence finds it (the cancel lands in the job's own await).
                self._async_jobs[job.id] = asyncio.current_task()  # type: ignore[assignment]
                try:
                    await runnable.func(*runnable.args, **runnable.kwargs)
                finally:
                    del self._async_jobs[job.id]
            else:
                await asyncio.get_running_loop().run_in_executor(
                    self._thread_pool(),
                    functools.partial(runnable.func, *runnable.args, **runnable.kwargs),
                )
        except JobAborted as error:
            logger.info("job %s (%s) aborted on request", job.id, job.task_name)
            return Outcome(job.id, Status.ABORTED, error=str(error) or "aborted on request")
        except Exception as error:  # noqa: BLE001 - whatever a task raises fails its job, never the worker
            return self._failure(job, runnable.retry, error, held=runnable.hold)
        return Outcome(job.id, Status.SUCCEEDED)

    def _failure(
        self, job: Job, retry: RetryStrategy | None, error: Exception, *, held: bool = False
    ) -> Outcome:
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
            return Outcome(job.id, Status.FAILED, error=text, held=held)
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
            await self._flush_late()
            batch, self._outcomes = self._outcomes, []
            self._flushing = batch
            try:
                assert self.worker_id is not None
                recorded = await self.manager.finish_async(batch, self.worker_id, self.delete_jobs)
            except BaseException:
                self._outcomes[:0] = batch  # keep them for the next flush: nothing is lost
                raise
            finally:
                self._flushing = []
            await self._announce(batch, recorded)
            if self.task_limits is not None and batch:
                # Recorded outcomes free seats of limited tasks: claim again now, rather
                # than at the next poll (other workers find them at theirs).
                self._wake.set()
                self._room.set()

    async def _announce(self, batch: list[Outcome], recorded: list[int]) -> None:
        """Tell completion watchers (pgqueue_ref.completion) how these jobs ended. Their
        outcomes are recorded already: a failure here only delays the watchers until
        their next look."""
        try:
            await self.manager.announce_finished_async(batch, recorded)
        except PgQueueError as error:
            logger.debug("could not announce %s finished jobs: %s", len(batch), error)

    async def _flush_late(self) -> None:
        """Outcomes of jobs claimed under an id we had before we were presumed dead:
        written under that id, so the worker_id guard keeps a new owner's outcome."""
        while self._late:
            old_id, batch = self._late.popitem()
            try:
                await self.manager.finish_async(batch, old_id)
            except BaseException:
                self._late.setdefault(old_id, [])[:0] = batch
                raise

    async def _flush_forever(self) -> None:
        while True:
            _stop_if_cancelled()
            await asyncio.sleep(self.flush_interval)
            try:
                await self._flush()
            except PgQueueError as error:
                if self._stop_if_closed(error):
                    return
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
        count as listening only once that notification comes back. A probe that could
        not be sent (the server restarting: the pool's connections are stale, while the
        LISTEN is back already) is sent again, later and later, until one is; this task
        is cancelled if the LISTEN is lost meanwhile."""
        delay, tries = 0.1, 0
        while not await self._probe_listen(quiet=tries > 0) and not self._stopping:
            await asyncio.sleep(delay)
            delay, tries = min(delay * 2, 5.0), tries + 1

    async def _probe_listen(self, *, quiet: bool = False) -> bool:
        """One probe; False if it could not be sent (try again). ``quiet``: a failure
        is logged at DEBUG (the first one was a warning)."""
        payload, heard = f"probe:{secrets.token_hex(8)}", asyncio.Event()
        self._probe = (payload, heard)
        try:
            await self.manager.notify_probe_async(self.channel, payload)
            async with asyncio.timeout(self.listen_check_timeout):
                await heard.wait()
        except TimeoutError:
            if self.stop_when_deaf:
                self._deaf(
                    f"its own test notification did not come back within "
                    f"{self.listen_check_timeout} s"
                )
                return True  # stopping: no second probe
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
            if self._stop_if_closed(error):
                return True
            log = logger.debug if quiet else logger.warning
            log("could not check that LISTEN hears (%s); polling meanwhile", error)
            return False
        else:
            self.listening.set()
            self._wake.set()  # a sleeping fetcher may now mark itself idle (and be notified)
        finally:
            self._probe = None
        return True

    def _deaf(self, why: str) -> None:
        """stop_when_deaf: the listener failed, so stop and say why."""
        self._fatal = ConnectionFailed(
            f"the worker's LISTEN on channel {self.channel!r} failed ({why}) and it was asked to "
            "stop then (shutdown_on_listener_failure=True); without that it polls every "
            f"{self.polling_interval} s until its LISTEN is back"
        )
        logger.error("%s", self._fatal)
        self._request_stop()

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
                if self._stop_if_closed(error):
                    return
                logger.warning("LISTEN connection lost (%s); polling until it is back", error)
            self.listening.clear()
            if self.stop_when_deaf:
                self._deaf("its LISTEN connection was lost")
                return
            if self._listen_check is not None:
                self._listen_check.cancel()
            self._wake.set()  # notifications may have been missed: look now
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _heartbeat_forever(self) -> None:
        # A partition hangs a query rather than failing it: give up on one that takes
        # longer than could still keep the fence away, and send a new one.
        timeout = self.fence_after - self.heartbeat_interval
        while True:
            _stop_if_cancelled()
            await asyncio.sleep(self.heartbeat_interval)
            try:
                async with asyncio.timeout(timeout):
                    await self._heartbeat_once()
            except TimeoutError:
                logger.warning("heartbeat got no answer within %.1f s; sending another", timeout)
            except PgQueueError as error:
                if self._stop_if_closed(error):
                    return
                logger.warning("heartbeat failed: %s", error)

    async def _heartbeat_once(self) -> None:
        assert self.worker_id is not None
        sent = time.monotonic()  # the row's heartbeat_at is now() on the server, no earlier
        if await self.manager.heartbeat_async(self.worker_id):
            self._last_ok_sent = sent
        else:
            # Silent for longer than stalled_after (cut off from the database): another
            # worker handed our jobs back. Fence (if the timer has not: a blocked event
            # loop, or a worker with a shorter stalled_after), then register again, so
            # that what we claim from now on is not taken for a dead worker's.
            self._fence("its worker row is gone: another worker presumed it dead")
            sent = time.monotonic()
            new_id = await self.manager.register_worker_async(self.name, self.connector.session_tag)
            old, self.worker_id, self._last_ok_sent = self.worker_id, new_id, sent
            if self._outcomes:  # recorded under the old id before the fence
                self._late.setdefault(old, []).extend(self._outcomes)
                self._outcomes = []
            logger.error("worker %s (id %s) was presumed dead and its jobs were requeued; "
                         "registered again as %s", self.name, old, self.worker_id)  # fmt: skip
        self._unfence()
        if await self.manager.requeue_stalled_async(self.stalled_after):
            self._wake.set()

    # -- fence ------------------------------------------------------------------

    async def _fence_forever(self) -> None:
        """Fence at ``_last_ok_sent + fence_after``: a timer that awaits no query, so
        nothing the database does (or does not do) can delay it."""
        while True:
            _stop_if_cancelled()
            remaining = self._last_ok_sent + self.fence_after - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)  # then look again: a heartbeat may have moved it
                continue
            self._fence(
                f"no heartbeat got through for {self.fence_after:g} s "
                f"(stalled_after={self.stalled_after:g} s)",
                cut_off=True,
            )
            await self._unfenced.wait()
            if self._stopping:
                return  # stop() sets _unfenced: nothing to fence any more

    #: Turns of the event loop between abandoning the connections and cancelling the
    #: fenced runs: by then a query stuck on an abandoned connection has seen its socket
    #: end (one turn), and its task has run with that error (one more). Turns, not
    #: seconds: on a starved loop a timer can fire in the very turn the socket does.
    ABANDON_TURNS = 5

    def _fence(self, why: str, *, cut_off: bool = False) -> None:
        """Stop running anything: from now on our jobs may be handed to another worker.
        ``cut_off``: struck by the timer, the database unreachable (not merely gone)."""
        if self.fenced:
            return
        self.fenced = True
        self._unfenced.clear()
        self._fence_epoch += 1
        self._orphans_possible = True  # if we were not presumed dead, hand back what we drop
        dropped = len(self._buffer)
        self._buffer.clear()  # not handed back: we cannot reach the database; the requeue will
        self._fenced_jobs.update(self._async_jobs)
        if self._fenced_jobs:
            self._fenced_runs_ended.clear()
        # A job stuck in a query on a cut-off connection does not end when cancelled:
        # psycopg answers a cancel by sending the server a cancel request (a new
        # connection, through the same partition) and then waits for the query's
        # result, 5 s for each (asyncpg too waited: the run ended at the heal).
        # Abandoning the connections first makes those queries fail at once (and the
        # pool replace them); the cancel follows a few loop turns later, so that it
        # lands after the failed query, not in it. (When our row is gone instead, the
        # worker that found us dead terminated our backends: nothing hangs.)
        abandoned = self.connector.abandon_connections() if cut_off else 0
        self._cancel_fenced_runs(self.ABANDON_TURNS if abandoned else 0)
        cancelled = len(self._async_jobs)
        self.stats.fenced += dropped + cancelled
        logger.error(
            "worker %s (id %s) fenced itself: %s. Other workers may requeue its jobs after "
            "stalled_after=%g s; it cancelled %s running async jobs and dropped %s claimed "
            "ones, recording no outcome for them, and claims nothing until a heartbeat "
            "gets through. %s sync jobs go on in threads, which cannot be cancelled: "
            "their outcomes are refused if their jobs have a new owner",
            self.name, self.worker_id, why, self.stalled_after, cancelled, dropped,
            self._busy - cancelled,
        )  # fmt: skip

    def _cancel_fenced_runs(self, after_turns: int = 0) -> None:
        if after_turns:
            assert self._loop is not None
            self._loop.call_soon(self._cancel_fenced_runs, after_turns - 1)
            return
        for job_id in self._fenced_jobs:  # those not ended by now
            if (task := self._async_jobs.get(job_id)) is not None:
                task.cancel()

    def _unfence(self) -> None:
        if not self.fenced:
            return
        self.fenced = False
        self._unfenced.set()
        self._wake.set()
        self._room.set()
        logger.warning("worker %s (id %s): a heartbeat got through; claiming again",
                       self.name, self.worker_id)  # fmt: skip

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


def _cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


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
