"""The sync/async bridge: blocking code using an async connector, without deadlocks.

An async pool belongs to the event loop it was opened in. Three cases:

* opened by ``open_async()`` in loop L, called from L: plain ``await``.
* opened by ``open_async()`` in L, called (blocking) from another thread,
  e.g. a sync task running in a worker thread: the coroutine is sent to L
  and the thread waits for it.
* opened by blocking ``open()`` with no loop running: the bridge starts a
  private loop in a daemon thread and the pool lives there; blocking and
  async callers alike send their coroutines to it.

A blocking call from inside L itself would wait for L while blocking L: it
raises :class:`~pgqueue_ref.exceptions.SyncCallInAsyncContext` instead,
pointing to the ``_async`` twins. A caller's own connection
(``configure(connection=...)``) belongs to the caller's loop, so queries on it
never go through the bridge.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..exceptions import SyncCallInAsyncContext

__all__ = ["LoopBridge"]

T = TypeVar("T")


class LoopBridge:
    """The loop an async connector's connections live in, and how to reach it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start_private_loop(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="pgqueue_ref-connector", daemon=True
        )
        thread.start()
        self.loop, self._thread = loop, thread

    def stop_private_loop(self) -> None:
        if self._thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()
        self.loop, self._thread = None, None

    @property
    def is_private(self) -> bool:
        return self._thread is not None

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.loop
        if loop is None or loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or self.loop is running:
            coro.close()
            raise SyncCallInAsyncContext(
                "a blocking call (defer(), batch_defer(), apply_schema(), open()...) was made "
                "inside the running event loop the connector belongs to (a notebook, an async "
                "function): it would wait for that loop while blocking it. Use its _async twin "
                "there, e.g. 'await task.defer_async(...)' or 'await app.open_async()'."
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
