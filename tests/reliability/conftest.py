"""Worker processes for the reliability tests: real processes, real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .chaos_app import RUNS_TABLE

HERE = Path(__file__).parent


class Workers:
    """Starts `python -m pgqueue_ref --app chaos_app:app worker ...` processes."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *options: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PGQUEUE_REF_DSN": self.dsn, "PYTHONPATH": str(HERE)}
        process = subprocess.Popen(
            [sys.executable, "-m", "pgqueue_ref", "--app", "chaos_app:app", "worker", *options],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def workers(dsn: str, db: Callable[..., Any]) -> Iterator[Workers]:
    db(RUNS_TABLE)
    pool = Workers(dsn)
    yield pool
    pool.stop_all()


def wait_until(predicate: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.05)
