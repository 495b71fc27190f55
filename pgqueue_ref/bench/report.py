"""What a benchmark run found: the figures, the ratios that matter, the checks; as text, JSON, PNG."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._table import format_table
from .runner import Check, MemoryCurve
from .subject import Subject

__all__ = ["COLUMNS", "Measurement", "Results"]

#: operation -> (column title, unit, higher is better)
COLUMNS: dict[str, tuple[str, str, bool]] = {
    "enqueue_one": ("enqueue 1 by 1", "jobs/s", True),
    "enqueue_batch": ("batch enqueue", "jobs/s", True),
    "drain": ("drain, 1 worker process", "jobs/s", True),
    "latency_p50": ("latency p50", "ms", False),
    "latency_p95": ("latency p95", "ms", False),
}


@dataclass
class Measurement:
    subject: str
    operation: str
    jobs: int
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def cell(self) -> str:
        fmt = _fmt(self.operation)
        low, high = min(self.values), max(self.values)
        spread = f" ({fmt(low)}–{fmt(high)})" if len(self.values) > 1 else ""
        return fmt(self.median) + spread


def _fmt(operation: str) -> Callable[[float], str]:
    if COLUMNS[operation][1] == "ms":
        return lambda v: f"{v:.1f}"
    return lambda v: f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


@dataclass
class Results:
    subjects: list[Subject]
    repeat: int
    meta: dict[str, Any] = field(default_factory=dict)
    measurements: dict[tuple[str, str], Measurement] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    memory: list[MemoryCurve] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def add(self, subject: str, operation: str, jobs: int, value: float) -> None:
        key = (subject, operation)
        self.measurements.setdefault(key, Measurement(subject, operation, jobs)).values.append(
            value
        )

    def median(self, subject: Subject | None, operation: str) -> float | None:
        found = self.measurements.get((subject.name, operation)) if subject else None
        return found.median if found else None

    # -- the tables ---------------------------------------------------------------------

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        headers = ["subject", "worker"] + [
            f"{title} ({unit})" for title, unit, _ in COLUMNS.values()
        ]
        rows = []
        for subject in self.subjects:
            worker = subject.settings if subject.can_run_worker else "no worker (blocking)"
            if not subject.can_run_worker and subject.settings:
                worker += f"; {subject.settings}"
            cells = [subject.name, worker]
            for operation in COLUMNS:
                found = self.measurements.get((subject.name, operation))
                cells.append(found.cell() if found else "—")
            rows.append(cells)
        return headers, rows

    def _find(self, family: str, driver: str | None = None) -> Subject | None:
        """The first subject of ``family`` (on ``driver``, with a worker, if given)."""
        for subject in self.subjects:
            if subject.family != family:
                continue
            if driver is None or (subject.driver == driver and subject.can_run_worker):
                return subject
        return None

    def ratio_rows(self) -> tuple[list[str], list[list[str]]]:
        """pgqueue_ref's subjects against the minimal loop and the anchors, per target."""
        minimal = self._find("reference")
        pgq_asyncpg = self._find("pgqueuer", "asyncpg")
        procrastinate = self._find("procrastinate", "psycopg")
        headers = [
            "subject",
            "1 by 1 / minimal",
            "batch / minimal",
            "drain / PgQueuer same driver",
            "drain / PgQueuer asyncpg",
            "drain / procrastinate",
            "p50 − minimal (ms)",
        ]
        rows = []
        for subject in self.subjects:
            if subject.family != "pgqueue_ref":
                continue
            same_driver = self._find("pgqueuer", subject.driver)
            rows.append(
                [
                    subject.name,
                    self._ratio(subject, minimal, "enqueue_one"),
                    self._ratio(subject, minimal, "enqueue_batch"),
                    self._ratio(subject, same_driver, "drain"),
                    self._ratio(subject, pgq_asyncpg, "drain"),
                    self._ratio(subject, procrastinate, "drain"),
                    self._difference(subject, minimal, "latency_p50"),
                ]
            )
        return headers, rows

    def pooled_rows(self) -> tuple[list[str], list[list[str]]]:
        """Each pooled twin against its direct subject, measured in the same run: rates
        as pooled / direct (below 1: the pooler costs), latency as pooled / direct
        (above 1: the pooler costs) and as the milliseconds it adds.

        Each ratio is the median of the ratios of the repetitions, pair by pair: the
        twin runs right after its subject in every round, so a pair shares the
        machine's load of the moment, which a ratio of medians would mix up."""
        headers = [
            "subject (pooled / direct)",
            "1 by 1",
            "batch",
            "drain",
            "latency p50",
            "latency p95",
            "p50 pooled − direct (ms)",
        ]
        by_name = {s.name: s for s in self.subjects}
        rows = []
        for twin in self.subjects:
            direct = by_name.get(twin.direct) if twin.direct else None
            if direct is None:
                continue
            rows.append(
                [direct.name]
                + [
                    self._paired_ratio(twin, direct, operation)
                    for operation in (
                        "enqueue_one",
                        "enqueue_batch",
                        "drain",
                        "latency_p50",
                        "latency_p95",
                    )
                ]
                + [self._difference(twin, direct, "latency_p50")]
            )
        return headers, rows

    def _paired_ratio(self, subject: Subject, other: Subject, operation: str) -> str:
        mine = self.measurements.get((subject.name, operation))
        theirs = self.measurements.get((other.name, operation))
        if mine is None or theirs is None:
            return "—"
        pairs = [a / b for a, b in zip(mine.values, theirs.values) if b]
        return f"{statistics.median(pairs):.2f}×" if pairs else "—"

    def _ratio(self, subject: Subject, other: Subject | None, operation: str) -> str:
        mine, theirs = self.median(subject, operation), self.median(other, operation)
        return f"{mine / theirs:.2f}×" if mine and theirs else "—"

    def _difference(self, subject: Subject, other: Subject | None, operation: str) -> str:
        mine, theirs = self.median(subject, operation), self.median(other, operation)
        return f"{mine - theirs:+.2f}" if mine is not None and theirs is not None else "—"

    def memory_rows(self) -> tuple[list[str], list[list[str]]]:
        headers = ["subject", "jobs", "s", "RSS at 10% (MB)", "RSS at end (MB)", "peak (MB)"]
        rows = [
            [
                m.subject,
                f"{m.jobs:,}",
                f"{m.seconds:.1f}",
                f"{m.start / 2**20:.1f}",
                f"{m.end / 2**20:.1f}",
                f"{m.peak / 2**20:.1f}",
            ]
            for m in self.memory
        ]
        return headers, rows

    def text(self) -> str:
        parts = [
            f"medians of {self.repeat} runs (min–max)",
            format_table(*self.table_rows()),
            "",
            "ratios of medians",
            format_table(*self.ratio_rows()),
        ]
        pooled = self.pooled_rows()
        if pooled[1]:
            title = "through PgBouncer (transaction mode) / direct: medians of the paired ratios"
            parts += ["", title, format_table(*pooled)]
        if self.memory:
            parts += ["", "worker memory during a long drain", format_table(*self.memory_rows())]
        parts += ["", self.checks_summary()]
        for name, error in self.failures.items():
            parts.append(f"FAILED {name}: {error}")
        return "\n".join(parts)

    def markdown(self) -> str:
        parts = [_markdown(*self.table_rows()), "", _markdown(*self.ratio_rows())]
        pooled = self.pooled_rows()
        if pooled[1]:
            parts += ["", _markdown(*pooled)]
        if self.memory:
            parts += ["", _markdown(*self.memory_rows())]
        return "\n".join(parts) + "\n"

    def checks_summary(self) -> str:
        bad = [c for c in self.checks if not c.ok]
        if bad:
            return "CHECKS FAILED:\n" + "\n".join(map(str, bad))
        return (
            f"checks: in all {len(self.checks)} worker runs, every job ran exactly once "
            "and none was left unfinished"
        )

    # -- files --------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "meta": self.meta,
                "subjects": [
                    {
                        "name": s.name,
                        "driver": s.driver,
                        "family": s.family,
                        "settings": s.settings,
                        "direct": s.direct,
                    }
                    for s in self.subjects
                ],
                "measurements": [
                    asdict(m) | {"median": m.median, "unit": COLUMNS[m.operation][1]}
                    for m in self.measurements.values()
                ],
                "checks": [asdict(c) | {"ok": c.ok} for c in self.checks],
                "memory": [
                    asdict(m) | {"rss_start": m.start, "rss_end": m.end, "rss_peak": m.peak}
                    for m in self.memory
                ],
                "failures": self.failures,
            },
            indent=1,
        )

    def plot(self, path: Path) -> None:
        """One panel per operation: a bar per subject (median), whiskers min–max."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter

        panels = ["enqueue_one", "enqueue_batch", "drain", "latency_p50"]
        names = [s.name for s in self.subjects]
        colours = {
            "pgqueue_ref": "tab:blue",
            "procrastinate": "tab:orange",
            "pgqueuer": "tab:green",
        }
        figure, axes = plt.subplots(
            1, len(panels), figsize=(16, 0.45 * len(names) + 1.6), sharey=True
        )
        for ax, operation in zip(axes, panels):
            title, unit, higher = COLUMNS[operation]
            for y, subject in enumerate(self.subjects):
                found = self.measurements.get((subject.name, operation))
                if found is None:
                    continue
                median = found.median
                colour = "tab:cyan" if subject.direct else colours.get(subject.family, "tab:gray")
                ax.barh(y, median, color=colour)
                ax.errorbar(
                    median,
                    y,
                    xerr=[[median - min(found.values)], [max(found.values) - median]],
                    color="black",
                    capsize=2,
                    linewidth=0.8,
                )
                if operation == "latency_p50":
                    p95 = self.measurements.get((subject.name, "latency_p95"))
                    if p95 is not None:
                        ax.plot(p95.median, y, "k|", markersize=10)
                ax.annotate(
                    _fmt(operation)(median),
                    (max(found.values), y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                )
            ax.set_title(
                f"{title}\n({unit}, {'higher' if higher else 'lower'} is better)", fontsize=9
            )
            # Log scales: the subjects differ by orders of magnitude.
            ax.set_xscale("log")
            fmt = _fmt(operation)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _, fmt=fmt: fmt(v)))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.margins(x=0.3)
            ax.tick_params(labelsize=8)
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(range(len(names)), names)
        axes[0].invert_yaxis()
        axes[-1].set_title(axes[-1].get_title() + "\n| = p95", fontsize=9)
        figure.suptitle(
            f"medians of {self.repeat} runs, whiskers min–max; {self.meta.get('server', '')}",
            fontsize=9,
        )
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        plt.close(figure)


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
