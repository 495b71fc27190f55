"""What tools/claim_ceiling.py and tools/drain_ceiling.py share: subjects measured in
turn, round after round, on one server, and a Markdown table of their medians."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Awaitable, Callable, Mapping

#: One subject: given the server's DSN and a number of jobs, its rate in jobs/s.
Measure = Callable[[str, int], Awaitable[float]]


async def round_robin(
    subjects: Mapping[str, Measure], dsn: str, jobs: int, repeat: int
) -> dict[str, list[float]]:
    """Every subject once, then again, ``repeat`` times: a drift in the machine's load
    touches them alike. Progress on stderr, one line a round."""
    rates: dict[str, list[float]] = {name: [] for name in subjects}
    for round_ in range(repeat):
        for name, measure in subjects.items():
            rates[name].append(await measure(dsn, jobs))
        print(f"round {round_ + 1} of {repeat} done", file=sys.stderr)
    return rates


def print_rates(rates: Mapping[str, list[float]], base: str, over: str) -> None:
    """The medians in jobs/s, each over ``base``'s, as a Markdown table."""
    reference = statistics.median(rates[base])
    print(f"| subject | jobs/s | over {over} |")
    print("| --- | ---: | ---: |")
    for name, measured in rates.items():
        median = statistics.median(measured)
        print(f"| {name} | {median:,.0f} | {median / reference:.2f}x |")
