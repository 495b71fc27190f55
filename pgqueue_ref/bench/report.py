"""What a benchmark run found: the figures, the ratios that matter, the checks; as text, JSON, PNG."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._table import format_table
from .minimal import MINIMAL, SCHEMA_LIMIT
from .producers import (
    BARE,
    BARE_NOTIFY,
    KINDS,
    OURS,
    OURS_ALWAYS,
    QUEUE_FACE,
    SCHEMA_INSERT,
    ProducerRun,
)
from .runner import Check, MemoryCurve
from .subject import Subject

__all__ = ["COLUMNS", "Measurement", "Results", "plot_scaling", "records", "scaling_figure"]

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
    #: (kind, producers, worker) -> jobs/s of each round (:mod:`.producers`).
    producers: dict[tuple[str, int, str], ProducerRun] = field(default_factory=dict)
    #: (subject, worker processes) -> drain jobs/s of each round.
    scaling: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> Results:
        """A run read back from its JSON (:meth:`to_json`): every table and ratio of the
        run, without re-running it (notebook 08 reads the committed run this way)."""
        saved = json.loads(text)
        subjects = [_saved_subject(s, saved["measurements"]) for s in saved["subjects"]]
        results = cls(subjects, saved["meta"].get("repeat", 1), meta=saved["meta"])
        for m in saved["measurements"]:
            key = (m["subject"], m["operation"])
            results.measurements[key] = Measurement(
                m["subject"], m["operation"], m["jobs"], m["values"]
            )
        fields = ("subject", "operation", "expected", "runs", "distinct", "unfinished")
        results.checks = [Check(*(c[f] for f in fields)) for c in saved["checks"]]
        results.memory = [
            MemoryCurve(m["subject"], m["jobs"], m["seconds"], [tuple(x) for x in m["samples"]])
            for m in saved["memory"]
        ]
        results.failures = dict(saved["failures"])
        for r in saved.get("producers", []):
            run = ProducerRun(r["kind"], r["producers"], r["worker"], r["jobs"], r["values"])
            results.producers[(run.kind, run.producers, run.worker)] = run
        for r in saved.get("scaling", []):
            results.scaling[(r["subject"], r["processes"])] = r["values"]
        return results

    @classmethod
    def read(cls, path: Path | str) -> Results:
        """:meth:`from_json` of a file."""
        return cls.from_json(Path(path).read_text())

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

    def _named(self, name: str) -> Subject | None:
        return next((s for s in self.subjects if s.name == name), None)

    def ratio_rows(self) -> tuple[list[str], list[list[str]]]:
        """pgqueue_ref's subjects against the two limits and the anchors, per target."""
        minimal = self._named(MINIMAL)
        ours = self._named(SCHEMA_LIMIT)
        pgq_asyncpg = self._find("pgqueuer", "asyncpg")
        procrastinate = self._find("procrastinate", "psycopg")
        headers = [
            "subject",
            "1 by 1 / minimal",
            "batch / minimal",
            "drain / minimal",
            "1 by 1 / our table's limit",
            "batch / our table's limit",
            "drain / our table's limit",
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
                    self._ratio(subject, minimal, "drain"),
                    self._ratio(subject, ours, "enqueue_one"),
                    self._ratio(subject, ours, "enqueue_batch"),
                    self._ratio(subject, ours, "drain"),
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

    def limit_rows(self) -> tuple[list[str], list[list[str]]]:
        """Our table's limit against the minimal loop: what the schema alone costs."""
        headers = ["limit", "1 by 1 / minimal", "batch / minimal", "drain / minimal"]
        ours, minimal = self._named(SCHEMA_LIMIT), self._named(MINIMAL)
        if ours is None or minimal is None:
            return headers, []
        ops = ("enqueue_one", "enqueue_batch", "drain")
        return headers, [[ours.name] + [self._ratio(ours, minimal, op) for op in ops]]

    # -- concurrent producers and scaling -------------------------------------------------

    def producer_median(self, kind: str, producers: int, worker: str) -> float | None:
        found = self.producers.get((kind, producers, worker))
        return statistics.median(found.values) if found else None

    def producer_counts(self) -> list[int]:
        return sorted({p for _, p, _ in self.producers})

    def producer_rows(self) -> tuple[list[str], list[list[str]]]:
        """jobs/s (medians) of each kind of producer, by number of producers."""
        counts = self.producer_counts()
        headers = ["producer", "worker"] + [f"P = {p}" for p in counts]
        rows = []
        for worker in ("none", "busy"):
            for kind in KINDS:
                cells = [self.producer_median(kind, p, worker) for p in counts]
                if any(c is not None for c in cells):
                    rows.append([kind, worker] + [_rate(c) for c in cells])
        return headers, rows

    def producer_ratio(self, kind: str, over: str, producers: int, worker: str) -> float | None:
        mine = self.producer_median(kind, producers, worker)
        theirs = self.producer_median(over, producers, worker)
        return mine / theirs if mine and theirs else None

    def producer_ratio_rows(self) -> tuple[list[str], list[list[str]]]:
        counts = self.producer_counts()
        headers = ["ratio", "worker"] + [f"P = {p}" for p in counts]
        pairs = [
            (OURS, BARE),
            (OURS, SCHEMA_INSERT),
            (QUEUE_FACE, BARE),
            (QUEUE_FACE, SCHEMA_INSERT),
            (SCHEMA_INSERT, BARE),
            (BARE_NOTIFY, BARE),
            (OURS_ALWAYS, BARE),
        ]
        rows = []
        for worker in ("none", "busy"):
            for kind, over in pairs:
                cells = [self.producer_ratio(kind, over, p, worker) for p in counts]
                if any(c is not None for c in cells):
                    rows.append(
                        [f"{kind} / {over}", worker]
                        + [f"{c:.2f}×" if c is not None else "—" for c in cells]
                    )
        return headers, rows

    def scaling_median(self, subject: str, processes: int) -> float | None:
        found = self.scaling.get((subject, processes))
        return statistics.median(found) if found else None

    def scaling_rows(self) -> tuple[list[str], list[list[str]]]:
        counts = sorted({k for _, k in self.scaling})
        headers = ["subject"] + [f"{k} process{'es' if k > 1 else ''}" for k in counts]
        names = list(dict.fromkeys(name for name, _ in self.scaling))
        rows = []
        for name in names:
            one = self.scaling_median(name, counts[0])
            cells = []
            for k in counts:
                rate = self.scaling_median(name, k)
                ratio = f" ({rate / one:.2f}×)" if rate and one and k != counts[0] else ""
                cells.append(_rate(rate) + ratio)
            rows.append([name] + cells)
        return headers, rows

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
        limit = self.limit_rows()
        if limit[1]:
            parts += ["", "the schema's cost: our table's limit / the minimal loop"]
            parts += [format_table(*limit)]
        if self.producers:
            parts += ["", "concurrent producers, one job per transaction (jobs/s)"]
            parts += [format_table(*self.producer_rows()), ""]
            parts += ["concurrent producers: ratios", format_table(*self.producer_ratio_rows())]
        if self.scaling:
            parts += ["", "drain by worker processes (jobs/s; × one process)"]
            parts += [format_table(*self.scaling_rows())]
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
        if self.limit_rows()[1]:
            parts += ["", _markdown(*self.limit_rows())]
        if self.producers:
            parts += ["", _markdown(*self.producer_rows())]
            parts += ["", _markdown(*self.producer_ratio_rows())]
        if self.scaling:
            parts += ["", _markdown(*self.scaling_rows())]
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
                        "worker": s.can_run_worker,
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
                "producers": [
                    asdict(r) | {"median": statistics.median(r.values)}
                    for r in self.producers.values()
                ],
                "scaling": [
                    {
                        "subject": name,
                        "processes": k,
                        "values": values,
                        "median": statistics.median(values),
                    }
                    for (name, k), values in self.scaling.items()
                ],
            },
            indent=1,
        )

    def plot(self, path: Path) -> None:
        """:meth:`figure`, written to ``path`` (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure = self.figure()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        plt.close(figure)

    def figure(self) -> Any:
        """One panel per operation: a bar per subject (median), whiskers min–max."""
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
        return figure

    def per_job_records(self) -> list[dict[str, Any]]:
        """Each rate turned around: microseconds per job, one by one, in a batch, drained."""
        ops = {"1 by 1": "enqueue_one", "batch": "enqueue_batch", "drain": "drain"}
        rows = []
        for subject in self.subjects:
            row: dict[str, Any] = {"subject": subject.name}
            for title, op in ops.items():
                rate = self.median(subject, op)
                row[f"µs per job, {title}"] = f"{1e6 / rate:.1f}" if rate else "—"
            rows.append(row)
        return rows

    def meta_records(self) -> list[dict[str, Any]]:
        """Which command wrote the run, when, on what, with which versions and sizes."""
        keys = ("command", "date", "server", "cpus", "python", "repeat", "versions", "sizes")
        return [{"": key, "value": self.meta.get(key)} for key in keys]


def records(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    """A table of the report (``results.ratio_rows()``...) as one dict per row, for
    :func:`pgqueue_ref.display.table`."""
    return [dict(zip(headers, row)) for row in rows]


def _never(*_: Any) -> Any:
    raise RuntimeError("a subject read back from JSON cannot be measured again")


def _saved_subject(saved: dict[str, Any], measurements: list[dict[str, Any]]) -> Subject:
    """A subject as the JSON describes it: its name and settings, nothing to run."""
    measured = {m["operation"] for m in measurements if m["subject"] == saved["name"]}
    worker = saved.get("worker", "drain" in measured)  # older files have no "worker"
    return Subject(
        name=saved["name"],
        driver=saved["driver"],
        family=saved["family"],
        settings=saved["settings"],
        setup=_never,
        unfinished=_never,
        async_client=_never if worker else None,
        sync_client=None if worker else _never,
        worker=_never if worker else None,
        direct=saved.get("direct"),
    )


def plot_scaling(results: Results, path: Path) -> None:
    """:func:`scaling_figure`, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = scaling_figure(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def scaling_figure(results: Results) -> Any:
    """Two panels: jobs/s by number of producers (each kind, with and without a busy
    worker), and drain jobs/s by number of worker processes."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    counts = results.producer_counts()
    for colour, kind in enumerate(KINDS):  # a colour per kind, a line style per worker
        for worker, style in (("none", "--"), ("busy", "-")):
            rates = [results.producer_median(kind, p, worker) for p in counts]
            if any(r is not None for r in rates):
                left.plot(
                    counts, rates, style, color=f"C{colour}", marker="o",
                    label=f"{kind} (worker: {worker})",
                )  # fmt: skip
    left.set_xscale("log", base=2)
    left.set_xticks(counts, [str(p) for p in counts])
    left.set_xlabel("concurrent producers, one job per transaction")
    left.set_ylabel("jobs/s")
    left.set_title("enqueue by concurrent producers (median)", fontsize=9)
    if results.producers:  # a panel with nothing measured gets no legend
        left.legend(fontsize=6)
    left.grid(alpha=0.3)
    processes = sorted({k for _, k in results.scaling})
    for name in dict.fromkeys(n for n, _ in results.scaling):
        right.plot(
            processes, [results.scaling_median(name, k) for k in processes], marker="o", label=name
        )
    right.set_xticks(processes, [str(k) for k in processes])
    right.set_xlabel("worker processes")
    right.set_ylabel("jobs/s")
    right.set_title("drain by worker processes (median)", fontsize=9)
    if results.scaling:
        right.legend(fontsize=7)
    right.grid(alpha=0.3)
    figure.suptitle(
        f"{results.meta.get('server', '')}, {results.meta.get('cpus')} CPUs", fontsize=9
    )
    figure.tight_layout()
    return figure


def _rate(value: float | None) -> str:
    return "—" if value is None else _fmt("drain")(value)


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
