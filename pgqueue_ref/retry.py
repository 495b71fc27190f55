"""When a failed job runs again, and after how long.

``@app.task(retry=3)`` means: up to 3 more attempts after the first one, right
away. A :class:`RetryStrategy` says more: how long to wait (fixed, growing
linearly, or exponentially with the attempt number) and which exceptions are
worth retrying at all.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryStrategy", "retry_strategy"]


@dataclass(frozen=True, slots=True)
class RetryStrategy:
    """``max_retries`` more attempts after the first; None means no limit.

    The wait before retry number n (1, 2, ...) is
    ``wait + linear_wait * n + exponential_wait ** n`` seconds (the exponential
    term only when ``exponential_wait`` is set).
    """

    max_retries: int | None = 0
    wait: float = 0.0
    linear_wait: float = 0.0
    exponential_wait: float = 0.0
    retry_exceptions: tuple[type[BaseException], ...] | None = None

    def retry_in(self, attempts: int, error: BaseException) -> float | None:
        """Seconds to wait before running again after failed attempt number
        ``attempts`` (1 for the first run), or None to give up."""
        if self.retry_exceptions is not None and not isinstance(error, self.retry_exceptions):
            return None
        if self.max_retries is not None and attempts > self.max_retries:
            return None
        delay = self.wait + self.linear_wait * attempts
        if self.exponential_wait:
            delay += self.exponential_wait**attempts
        return delay


def retry_strategy(retry: bool | int | RetryStrategy | None) -> RetryStrategy | None:
    """Read a task's ``retry=`` option: False/0/None (never), True (forever), N, or a strategy."""
    if retry is None or retry is False:
        return None
    if retry is True:
        return RetryStrategy(max_retries=None)
    if isinstance(retry, RetryStrategy):
        return retry
    if isinstance(retry, int) and retry >= 0:
        return RetryStrategy(max_retries=retry) if retry else None
    raise TypeError(
        f"retry={retry!r}: expected True, False, a number of retries >= 0, or a RetryStrategy"
    )
