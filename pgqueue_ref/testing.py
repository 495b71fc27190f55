"""Helpers to see the worker's guarantees at work: a network you can cut, and a
timeline of what each worker did. The reliability tests, ``tools/chaos.py`` and
notebook 14 (self-fencing) use them.

* :class:`PartitionProxy`, a TCP proxy that can cut the network:
  ``partition()`` stops forwarding in both directions and leaves every socket
  open, as a real partition does (queries hang, nothing errors); ``heal()``
  lets the bytes through again, those held meanwhile included.
* :class:`Timeline` notes, on one clock, what you tell it and what the workers
  it watches say in their logs (fenced, presumed dead and registered again,
  claiming again), and shows it as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .display import Table

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["Event", "PartitionProxy", "Timeline", "upstream_of"]


class PartitionProxy:
    """127.0.0.1 on an ephemeral port, forwarding to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()

    def dsn_for(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the proxy's, in the same form
        (a URL stays a URL: asyncpg takes no other)."""
        url = urllib.parse.urlsplit(dsn)
        if url.scheme in ("postgres", "postgresql"):
            credentials = url.netloc.rpartition("@")[0]
            netloc = f"{credentials}@" if credentials else ""
            return url._replace(netloc=f"{netloc}127.0.0.1:{self.port}").geturl()
        params = conninfo_to_dict(dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo("", **params)

    def partition(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    async def start(self) -> Self:
        """Listen (``async with PartitionProxy(...)`` does it for you)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and close every connection through the proxy."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await self._open.wait()  # a new connection does not get through a partition either
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:  # the server is down: refuse, as the server itself would
            writer.close()
            return
        self._writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._open.wait()  # partitioned: hold the bytes, keep the socket
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        await self._open.wait()  # a partition does not carry the close either
        sink.close()


def upstream_of(dsn: str) -> tuple[str, int]:
    """The host and port that ``dsn`` connects to (a proxy's upstream)."""
    params = conninfo_to_dict(dsn)
    return str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # time.time(): the server's clock too, on one machine
    who: str
    what: str


#: What a worker's log says, and how the timeline puts it.
_WORKER_SAYS = {
    "fenced itself": "fenced itself: stops its jobs, claims nothing",
    "was presumed dead": "was presumed dead: registers again under a new id",
    "claiming again": "a heartbeat got through: claims again",
}


class Timeline(logging.Handler):
    """Events on one clock (``time.time()``): ``note(who, what)``, and what the
    workers given to :meth:`watching` log about fencing."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[Event] = []
        self._names: dict[str, str] = {}  # the worker's name -> who

    def note(self, who: str, what: str, at: float | None = None) -> float:
        """Note an event now (or ``at``, a ``time.time()``); returns its time."""
        at = time.time() if at is None else at
        self.events.append(Event(at, who, what))
        return at

    def when(self, who: str, what: str) -> float:
        """The time of the first event of ``who`` whose text starts with ``what``."""
        for event in self.events:
            if event.who == who and event.what.startswith(what):
                return event.at
        raise LookupError(f"no event {what!r} of {who!r}; there are: {self.events}")

    async def wait_for(self, who: str, what: str, timeout: float = 60) -> float:
        """Wait until ``who`` has an event starting with ``what``; its time."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LookupError):
                return self.when(who, what)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no event {what!r} of {who!r} within {timeout} s")
            await asyncio.sleep(0.01)

    @contextlib.contextmanager
    def watching(self, workers: dict[str, Worker]) -> Iterator[Self]:
        """Note what these workers (by who: worker) log about fencing while the
        block runs; their log records stop there, instead of going to stderr."""
        self._names = {worker.name: who for who, worker in workers.items()}
        log = logging.getLogger("pgqueue_ref.worker")
        level, propagate = log.level, log.propagate
        log.addHandler(self)
        log.setLevel(logging.INFO)
        log.propagate = False
        try:
            yield self
        finally:
            log.removeHandler(self)
            log.setLevel(level)
            log.propagate = propagate

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for name, who in self._names.items():
            if message.startswith(f"worker {name} "):
                for says, what in _WORKER_SAYS.items():
                    if says in message:
                        self.note(who, what, record.created)

    def table(self, zero: float) -> Table:
        """The events in time order, each at ``+seconds`` after ``zero``
        (a ``time.time()``, e.g. what :meth:`note` returned)."""
        rows = [
            {"when": f"{event.at - zero:+.2f} s", "who": event.who, "what": event.what}
            for event in sorted(self.events, key=lambda e: e.at)
        ]
        return Table(rows, ("when", "who", "what"))
