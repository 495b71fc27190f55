"""How many jobs a worker keeps claimed in hand: fixed, or adapted to how fast its jobs run.

Jobs per round trip decide drain speed: claiming 500 no-op jobs at a time
drains several times faster than claiming 10. But a claimed job that waits in
a worker's buffer is a job no other worker can run: with slow jobs, a big
claim is unfair. The adaptive size serves both. It watches how long claimed
jobs wait in hand before a runner starts them:

* the longest wait since the last claim was under ``fast`` seconds: the jobs
  go quickly, so the next claim is twice as big (up to ``most``);
* it was over ``slow`` seconds: the jobs are slow, so the next claim is half
  as big (down to 1);
* in between, or if no job started since the last claim, the size stays.

When a claim gets fewer jobs than it asked for, the queue has run dry, and
the next jobs may be of another kind: the size goes back to where it started
(the worker's concurrency), so that a burst of slow jobs arriving after a
burst of fast ones is not swallowed by one worker. A worker given
``prefetch=N`` keeps N in hand, always.
"""

from __future__ import annotations

__all__ = ["MOST", "ClaimSize"]

#: The largest adaptive claim: past a few hundred, bigger claims hardly drain faster (measured).
MOST = 1000


class ClaimSize:
    def __init__(
        self,
        fixed: int | None = None,
        *,
        start: int = 1,
        most: int = MOST,
        fast: float = 0.1,
        slow: float = 1.0,
    ) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError(f"prefetch={fixed!r}: a worker keeps at least 1 job in hand")
        self.fixed = fixed
        self.most = most
        self.fast = fast
        self.slow = slow
        self.start = max(1, min(start, most))
        self.target = fixed if fixed is not None else self.start
        self._longest_wait = 0.0
        self._started = 0

    @property
    def adaptive(self) -> bool:
        return self.fixed is None

    @property
    def refill_below(self) -> int:
        """Claim again when fewer jobs than this wait in hand: the next claim's round
        trip then overlaps the runs of those still there."""
        return max(1, self.target // 2)

    def started(self, waited: float) -> None:
        """A runner started a job that waited ``waited`` seconds in hand."""
        self._started += 1
        self._longest_wait = max(self._longest_wait, waited)

    def before_claim(self) -> int:
        """Adapt to the waits seen since the last claim; return how many to keep in hand."""
        if self.adaptive and self._started:
            if self._longest_wait < self.fast:
                self.target = min(self.most, self.target * 2)
            elif self._longest_wait > self.slow:
                self.target = max(1, self.target // 2)
        self._longest_wait, self._started = 0.0, 0
        return self.target

    def after_claim(self, asked: int, got: int) -> None:
        """A claim asked for ``asked`` jobs and got ``got``."""
        if self.adaptive and got < asked:
            self.target = self.start
