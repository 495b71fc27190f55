"""pgqueue_ref.wakeup: the classes a notebook shows, and a measurement on a real worker,
direct (woken by its notification) and through PgBouncer alone (deaf, found by polling)."""

from __future__ import annotations

import pytest

import pgqueue_ref
from pgqueue_ref.wakeup import WakeUps, in_words, measure_wake_ups


@pytest.mark.parametrize(
    ("seconds", "interval", "words"),
    [
        (0.003, 1.0, "under 0.1 s"),
        (0.099, 1.0, "under 0.1 s"),
        (0.1, 1.0, "0.1 to 1 s"),
        (1.2, 1.0, "0.1 to 1 s"),  # a poll, plus the claim on a busy machine
        (1.6, 1.0, "over 1 s"),
        (0.2, 0.5, "0.05 to 0.5 s"),
    ],
)
def test_in_words(seconds: float, interval: float, words: str) -> None:
    assert in_words(seconds, interval) == words


def test_the_repr_and_the_row_hold_only_stable_values() -> None:
    wake_ups = WakeUps("PsycopgConnector", False, False, [0.9, 0.25, 0.5], ["deaf"], 1.0)
    assert repr(wake_ups) == (
        "WakeUps(PsycopgConnector, listen_dsn=False: listening=False, median 0.1 to 1 s, "
        "slowest 0.1 to 1 s, 3 jobs, 1 warning)"
    )
    assert wake_ups.row() == {
        "connector": "PsycopgConnector",
        "listen_dsn": False,
        "listening": False,
        "median wake-up": "0.1 to 1 s",
        "slowest": "0.1 to 1 s",
        "warnings": 1,
    }


async def test_a_listening_worker_is_woken_at_once(dsn: str) -> None:
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))

    @app.task(name="other")
    def other() -> None: ...

    async with app.open_async():
        await other.defer_async()  # not the measurement's: left alone
        wake_ups = await measure_wake_ups(
            pgqueue_ref.PsycopgConnector(conninfo=dsn), jobs=4, every=0.05, polling_interval=30
        )
        jobs = await app.job_manager.list_job_rows_async()
    assert wake_ups.listening and wake_ups.warnings == []
    assert len(wake_ups.seconds) == 4
    assert wake_ups.slowest == "under 3 s"  # a tenth of polling_interval=30
    assert sorted((job["task_name"], job["status"]) for job in jobs) == [
        ("other", "todo"),
        *[("pgqueue_ref.wake_up", "succeeded")] * 4,
    ]


async def test_a_deaf_worker_is_said_and_found_by_polling(pooled_dsn: str) -> None:
    connector = pgqueue_ref.PsycopgConnector(
        conninfo=pooled_dsn, kwargs={"prepare_threshold": None}
    )
    wake_ups = await measure_wake_ups(
        connector, jobs=3, every=0.1, polling_interval=0.5, listen_check_timeout=0.5
    )
    assert not wake_ups.listening and not wake_ups.listen_dsn
    assert len(wake_ups.warnings) == 1 and "hears nothing" in wake_ups.warnings[0]
    assert wake_ups.slowest == "0.05 to 0.5 s"
