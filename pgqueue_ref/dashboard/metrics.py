"""``/metrics``: :class:`~pgqueue_ref.dashboard.reads.Figures` in Prometheus' text format.

The figures live in the database, not in this process: every scrape reads
them anew (:func:`~pgqueue_ref.dashboard.reads.read_figures_async`) and a
collector of ``prometheus_client`` on a registry of its own writes them out,
so any number of dashboards, on any machines, report the same values. The
metrics:

======================================  =========  ======================================
``pgqueue_jobs{queue,status}``          gauge      jobs in the table
``pgqueue_jobs_finished_per_second``    gauge      finished in the last ``window`` seconds,
``{outcome}``                                      per second, per outcome
``pgqueue_job_duration_seconds``        histogram  claim to finish, of the finished jobs
                                                   the table holds
``pgqueue_workers_live``                gauge      workers with a recent heartbeat
``pgqueue_oldest_waiting_job_age_``     gauge      seconds the oldest due job has waited
``seconds``                                        (0: none waits)
======================================  =========  ======================================
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .reads import Figures

__all__ = ["CONTENT_TYPE", "metrics_text"]

#: The text format's content type, as ``prometheus_client`` writes it.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST


class _FiguresCollector(Collector):
    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        jobs = GaugeMetricFamily("pgqueue_jobs", "Jobs in the table, by queue and status.",
                                 labels=["queue", "status"])  # fmt: skip
        for (queue, status), count in sorted(f.jobs.items()):
            jobs.add_metric([queue, status], count)
        yield jobs
        finished = GaugeMetricFamily(
            "pgqueue_jobs_finished_per_second",
            f"Jobs finished per second over the last {f.window:g} s, by outcome.",
            labels=["outcome"],
        )
        for outcome, rate in f.finished_per_second.items():
            finished.add_metric([outcome], rate)
        yield finished
        yield HistogramMetricFamily(
            "pgqueue_job_duration_seconds",
            "Seconds from claim to finish, of the finished jobs the table holds.",
            buckets=[(_le(bound), count) for bound, count in f.durations.cumulative()],
            sum_value=f.durations.total_seconds,
        )
        yield GaugeMetricFamily("pgqueue_workers_live", "Workers with a recent heartbeat.",
                                value=f.live_workers)  # fmt: skip
        yield GaugeMetricFamily(
            "pgqueue_oldest_waiting_job_age_seconds",
            "Seconds the oldest job that is due has waited since it became due (0: none waits).",
            value=f.oldest_waiting_age or 0.0,
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def metrics_text(figures: Figures) -> bytes:
    """``figures`` in Prometheus' text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FiguresCollector(figures))
    return generate_latest(registry)
