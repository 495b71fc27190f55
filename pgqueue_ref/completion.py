"""Waiting for jobs to finish: PgQueuer's ``CompletionWatcher``, for both faces.

::

    async with CompletionWatcher(driver) as watcher:
        status = await watcher.wait_for(job_id)       # "successful", "exception", ...
        statuses = await asyncio.gather(*(watcher.wait_for(i) for i in ids))

    status = await app.job_manager.wait_for_job_async(job_id)   # the App face: a Status

How it learns, in order of speed:

1. **The announcement.** A worker that has recorded outcomes sends, right
   after, one notification on channel ``pgqueue_ref_finished`` saying how each
   of those jobs ended (``announce_finished`` in ``sql/queries.sql``). The
   watcher LISTENs there, on one connection for all of its waiters, and
   resolves them from the payload alone: no query, and a job that the worker
   deleted (``delete_jobs``) still resolves with its outcome. Workers announce
   only while a watcher is registered (table ``pgqueue_watchers``; each watcher
   adds its row once it listens and touches it every
   ``WATCHER_TOUCH_EVERY`` seconds): a NOTIFY serialises its transaction's
   commit with every other NOTIFYing one, a cost not worth paying for nobody.
2. **The first look.** Each job id asked about is looked up once (the looks of
   one ``debounce`` window go together in one query): an id with no row raises
   :class:`~pgqueue_ref.exceptions.JobNotFound` rather than waiting forever,
   and a job that had already finished resolves at once.
3. **The safety net.** Every ``refresh_interval`` the watcher looks at every
   job still waited for, in case an announcement was missed (its LISTEN
   connection was down, the worker died between recording and announcing).
   A job seen before and now gone resolves as ``"deleted"``.

PgQueuer's terminal statuses, from ours: ``succeeded`` → ``"successful"``,
``failed`` → ``"exception"`` (held failures too: here a held job is finished
until someone requeues it; PgQueuer's watcher keeps waiting through a hold),
``cancelled`` and ``aborted`` → ``"canceled"``, no row any more →
``"deleted"``. ``todo`` and ``doing`` (a retry included) are not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Literal, Self, TypeAlias

from .connectors import BaseConnector, require_async
from .exceptions import JobNotFound, PgQueueError
from .jobs import Status
from .manager import JobManager

__all__ = ["FINISHED_CHANNEL", "PGQUEUER_STATUS", "CompletionWatcher", "TerminalStatus"]

logger = logging.getLogger(__name__)

#: Where workers announce the outcomes they recorded (see ``announce_finished``).
FINISHED_CHANNEL = "pgqueue_ref_finished"
#: Seconds between two touches of a watcher's row (pgqueue_watchers); workers stop
#: announcing for a row a minute old.
WATCHER_TOUCH_EVERY = 20.0

#: PgQueuer's terminal statuses (its ``JOB_STATUS`` values a watcher resolves to).
TerminalStatus: TypeAlias = Literal["successful", "exception", "canceled", "deleted"]

#: Our finished statuses as PgQueuer names them.
PGQUEUER_STATUS: dict[Status, TerminalStatus] = {
    Status.SUCCEEDED: "successful",
    Status.FAILED: "exception",
    Status.CANCELLED: "canceled",
    Status.ABORTED: "canceled",
}

_UNFINISHED = (Status.TODO, Status.DOING)

# What a waiter's future resolves to: the job's finished status, or None when the
# job was seen and is gone (deleted, its outcome unknown).
_Outcome: TypeAlias = Status | None


class CompletionWatcher:
    """Resolves waiters as their jobs finish; one LISTEN for all of them.

    ``driver``: any async driver or connector (a blocking one cannot
    LISTEN: SyncConnectorConfigurationError). ``refresh_interval``: the
    safety net's period (None: no safety net, announcements only);
    ``debounce``: how long new waiters gather before their first look.
    ``queries``: accepted for code written for PgQueuer, whose watcher reads
    through it; this one reads through ``driver``, so it is not used.
    """

    def __init__(
        self,
        driver: BaseConnector,
        refresh_interval: datetime.timedelta | None = datetime.timedelta(seconds=5),
        debounce: datetime.timedelta = datetime.timedelta(milliseconds=50),
        *,
        queries: object | None = None,
    ) -> None:
        self.connector = require_async(driver, worker=True)
        for name, value in (("refresh_interval", refresh_interval), ("debounce", debounce)):
            if value is not None and not isinstance(value, datetime.timedelta):
                raise TypeError(f"{name}={value!r}: expected a datetime.timedelta")
        if refresh_interval is not None and refresh_interval.total_seconds() <= 0:
            raise ValueError(f"refresh_interval={refresh_interval!r}: expected more than 0 s")
        self.refresh_interval = refresh_interval
        self.debounce = debounce
        self._manager = JobManager(self.connector)
        self._waiters: dict[int, list[asyncio.Future[_Outcome]]] = {}
        self._seen: set[int] = set()  # ids known to exist: gone later means deleted
        self._unlooked: set[int] = set()  # ids not looked up yet
        self._look_soon = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher_id: int | None = None  # its row in pgqueue_watchers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.connector!r}, waiting for {len(self._waiters)} jobs)"

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        listening = asyncio.Event()
        listener = asyncio.create_task(
            self.connector.listen_async(
                FINISHED_CHANNEL, self._on_notify, lambda: self._in_loop(listening.set)
            ),
            name="pgqueue_ref-completion-listener",
        )
        self._tasks = [listener, asyncio.create_task(self._look_forever())]
        ready = asyncio.create_task(listening.wait())
        await asyncio.wait({ready, listener}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.is_set():  # the LISTEN failed: say why, now
            ready.cancel()
            await self._stop()
            listener.result()
        # Listening: now ask the workers to announce (they do not while no watcher is
        # registered). An outcome recorded before this is found by the first look.
        try:
            self._watcher_id = await self._manager.register_watcher_async()
        except BaseException:
            await self._stop()
            raise
        self._tasks.append(asyncio.create_task(self._stay_registered()))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._stop()
        if self._watcher_id is not None:
            watcher_id, self._watcher_id = self._watcher_id, None
            try:
                await self._manager.unregister_watcher_async(watcher_id)
            except PgQueueError as error:  # its row goes stale within a minute
                logger.warning("could not unregister completion watcher %s: %s", watcher_id, error)
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- waiting ------------------------------------------------------------------

    def wait_for(self, jid: int) -> asyncio.Future[TerminalStatus]:
        """A future of PgQueuer's terminal status of job ``jid`` (PgQueuer's method:
        ``await watcher.wait_for(job_id)``). It raises JobNotFound if there is no such job."""
        outcome = self._future(jid)
        result: asyncio.Future[TerminalStatus] = asyncio.get_running_loop().create_future()

        def translate(done: asyncio.Future[_Outcome]) -> None:
            if result.done():
                return
            if done.cancelled():
                result.cancel()
            elif (error := done.exception()) is not None:
                result.set_exception(error)
            else:
                status = done.result()
                result.set_result("deleted" if status is None else PGQUEUER_STATUS[status])

        outcome.add_done_callback(translate)
        # A waiter that gives up (a timeout, a cancel) stops being waited for.
        result.add_done_callback(lambda done: outcome.cancel() if done.cancelled() else None)
        return result

    async def wait_for_job(self, job_id: int) -> Status:
        """How job ``job_id`` finished, as the App face names it (a :class:`~pgqueue_ref.jobs.Status`).
        JobNotFound if there is no such job, or it was deleted before its outcome was seen."""
        status = await self._future(job_id)
        if status is None:
            raise JobNotFound(
                f"job {job_id} was deleted before this watcher saw how it finished (a "
                "notification missed while its row was deleted); its outcome is unknown"
            )
        return status

    def _future(self, job_id: int) -> asyncio.Future[_Outcome]:
        if not self._tasks:
            raise RuntimeError(
                "this CompletionWatcher is not listening: use it as 'async with "
                "CompletionWatcher(driver) as watcher:'"
            )
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise TypeError(f"job id {job_id!r}: expected an int")
        future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        self._unlooked.add(job_id)
        self._look_soon.set()
        return future

    # -- learning -----------------------------------------------------------------

    def _in_loop(self, callback: Callable[[], object]) -> None:
        """Drivers may call back from their own thread (see the connector bridge)."""
        assert self._loop is not None
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)

    def _on_notify(self, payload: str) -> None:
        outcomes: dict[int, Status] = {}
        for item in payload.split(","):
            job_id, _, status = item.partition(":")
            with contextlib.suppress(ValueError):
                outcomes[int(job_id)] = Status(status)
        self._in_loop(lambda: self._resolve(outcomes))

    def _resolve(self, statuses: dict[int, Status], gone: set[int] | None = None) -> None:
        for job_id, status in statuses.items():
            if status not in _UNFINISHED:
                self._settle(job_id, _result(status))
        for job_id in gone or ():
            self._settle(job_id, _result(None))

    def _settle(self, job_id: int, outcome: Callable[[asyncio.Future[_Outcome]], None]) -> None:
        for future in self._waiters.pop(job_id, []):
            if not future.done():
                outcome(future)
        self._seen.discard(job_id)
        self._unlooked.discard(job_id)

    async def _look_forever(self) -> None:
        period = self.refresh_interval.total_seconds() if self.refresh_interval else None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._look_soon.wait()
            await asyncio.sleep(self.debounce.total_seconds())  # let new waiters gather
            self._look_soon.clear()
            try:
                await self._look()
            except PgQueueError as error:
                logger.warning("could not look at the jobs waited for (%s); will retry", error)

    async def _stay_registered(self) -> None:
        """Touch the watcher's row so that workers keep announcing (a row a minute old
        no longer counts: its watcher died); register again if it was deleted."""
        while True:
            await asyncio.sleep(WATCHER_TOUCH_EVERY)
            try:
                assert self._watcher_id is not None
                if not await self._manager.touch_watcher_async(self._watcher_id):
                    self._watcher_id = await self._manager.register_watcher_async()
            except PgQueueError as error:
                logger.warning(
                    "could not keep completion watcher registered (%s); will retry", error
                )

    async def _look(self) -> None:
        """One query for every job still waited for: resolve the finished ones, raise
        JobNotFound for ids never seen, and call the seen-then-gone ones deleted."""
        # Drop futures whose waiter gave up (cancelled, timed out).
        for job_id in [i for i, fs in self._waiters.items() if all(f.done() for f in fs)]:
            self._settle(job_id, _nothing)
        if not self._waiters:
            return
        asked = set(self._waiters)
        first_look = self._unlooked & asked
        statuses = await self._manager.job_statuses_async(sorted(asked))
        missing = asked - set(statuses)
        for job_id in missing & first_look:
            error = JobNotFound(
                f"job {job_id} does not exist (never deferred, or already deleted): "
                "there is nothing to wait for"
            )
            self._settle(job_id, _exception(error))
        self._resolve(statuses, gone=(missing - first_look) & self._seen)
        self._seen |= set(statuses) & set(self._waiters)
        self._unlooked -= asked


def _result(status: _Outcome) -> Callable[[asyncio.Future[_Outcome]], None]:
    return lambda future: future.set_result(status)


def _exception(error: Exception) -> Callable[[asyncio.Future[_Outcome]], None]:
    return lambda future: future.set_exception(error)


def _nothing(future: asyncio.Future[_Outcome]) -> None:
    pass
