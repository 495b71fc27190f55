"""Chaos: workers killed at random while jobs flow; then check that nothing was lost.

    python tools/chaos.py --jobs 5000 --workers 4 --seconds 120

Starts a throwaway PostgreSQL (or uses PGQUEUE_REF_DSN), defers jobs before
and during the run, and keeps ``--workers`` worker processes going
(``python -m pgqueue_ref --app chaos_app:app worker``, the app of
tests/reliability/chaos_app.py, whose task records every run in a table).
Every ``--kill-every`` seconds it does one thing at random:

* SIGKILL a worker (its jobs wait for the stale-heartbeat timeout), or
* SIGTERM a worker (graceful: it finishes or hands back its jobs), or
* ``pg_terminate_backend`` one worker connection, or all of them;

and it restarts workers that are gone. When every job has run (or time is up)
it stops the workers and checks, from the database:

* accepted = done: every deferred job ended ``succeeded``, none is left;
* every job ran at least once, and no two runs of one job overlapped in time.

Bounded in count and time; all traffic goes to the local server. Exit code 0
when the checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgqueue_ref import embedded
from pgqueue_ref._table import format_table
from pgqueue_ref.sql import SCHEMA

APP_DIR = ROOT / "tests" / "reliability"
sys.path.insert(0, str(APP_DIR))

from chaos_app import RUNS_TABLE

OVERLAPS = """
SELECT count(*) FROM runs a JOIN runs b
  ON a.job_id = b.job_id AND a.ctid < b.ctid
 AND a.started < b.finished AND b.started < a.finished
"""


@dataclass
class Chaos:
    dsn: str
    workers: int
    rng: random.Random
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    logs: dict[int, Path] = field(default_factory=dict)  # pid -> its stderr
    failures: list[str] = field(default_factory=list)  # the last line of each error exit

    def start_worker(self) -> None:
        env = {**os.environ, "PGQUEUE_REF_DSN": self.dsn, "PYTHONPATH": str(APP_DIR)}
        command = [sys.executable, "-m", "pgqueue_ref", "--app", "chaos_app:app", "worker",
                   "--concurrency", "4", "--stalled-after", "3", "--heartbeat-interval", "0.3",
                   "--shutdown-timeout", "5"]  # fmt: skip
        log = Path(tempfile.mkstemp(prefix="chaos-worker-", suffix=".log")[1])
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, env=env, stderr=stderr)
        self.logs[process.pid] = log
        self.processes.append(process)

    def keep_workers_up(self) -> None:
        alive = [p for p in self.processes if p.poll() is None]
        for process in self.processes:
            if process.poll() == -signal.SIGTERM:  # before its handler was installed
                self.count("SIGTERM while starting: stopped at once")
            elif process.poll() not in (None, 0, -signal.SIGKILL):
                self.count("worker exited with an error")
                lines = self.logs[process.pid].read_text(errors="replace").strip().splitlines()
                self.failures.append(lines[-1] if lines else f"exit code {process.returncode}")
        self.processes = alive
        while len(self.processes) < self.workers:
            self.start_worker()

    def count(self, action: str, n: int = 1) -> None:
        if n:
            self.actions[action] = self.actions.get(action, 0) + n

    def strike(self, db: psycopg.Connection[Any]) -> None:
        victim = self.rng.choice(self.processes)
        action = self.rng.choice(
            ["SIGKILL a worker", "SIGTERM a worker", "kill one backend", "kill all backends"]
        )
        if action == "SIGKILL a worker":
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        elif action == "SIGTERM a worker":
            victim.send_signal(signal.SIGTERM)
        else:
            limit = "LIMIT 1" if action == "kill one backend" else ""
            db.execute(f"""
                SELECT pg_terminate_backend(pid) FROM (
                    SELECT pid FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                    ORDER BY random() {limit}) AS victims""")  # fmt: skip
        self.count(action)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                self.count("worker did not stop within 30 s")


def defer(db: psycopg.Connection[Any], jobs: int, rng: random.Random) -> None:
    db.execute(
        "INSERT INTO pgqueue_jobs (task_name, args) SELECT 'record', "
        "jsonb_build_object('seconds', %s::float * random()) FROM generate_series(1, %s)",
        [0.05, jobs],
    )


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    dsn = embedded.scratch_database("chaos")
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(SCHEMA)
        db.execute(RUNS_TABLE)
        defer(db, args.jobs // 2, rng)
        accepted = args.jobs // 2
        chaos = Chaos(dsn, args.workers, rng)
        chaos.keep_workers_up()
        started = time.monotonic()
        deadline = started + args.seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(args.kill_every)
                if accepted < args.jobs:  # the other half arrives during the chaos
                    batch = min(args.jobs - accepted, max(1, args.jobs // 20))
                    defer(db, batch, rng)
                    accepted += batch
                if accepted == args.jobs and _done(db) == accepted:
                    break
                chaos.strike(db)
                chaos.keep_workers_up()
                print(f"\r{time.monotonic() - started:5.1f} s: {_done(db)}/{accepted} done, "
                      f"{sum(chaos.actions.values())} strikes", end="", flush=True)  # fmt: skip
            # Calm after the storm: let the survivors (and the stalled-job recovery) finish.
            calm_until = time.monotonic() + args.calm
            while _done(db) < accepted and time.monotonic() < calm_until:
                chaos.keep_workers_up()
                time.sleep(0.2)
        finally:
            chaos.stop()
        print()
        statuses = db.execute(
            "SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1 ORDER BY 1"
        ).fetchall()
        runs, distinct = db.execute("SELECT count(*), count(DISTINCT job_id) FROM runs").fetchone()  # type: ignore[misc]
        (overlaps,) = db.execute(OVERLAPS).fetchone()  # type: ignore[misc]
    print(format_table(["what happened", "times"], sorted(chaos.actions.items())))
    for failure in chaos.failures:
        print(f"  worker error: {failure}")
    print()
    print(format_table(["status", "jobs"], statuses))
    print()
    checks = [
        ("accepted = done (all succeeded, none left)", statuses == [("succeeded", accepted)]),
        (f"every job ran at least once ({distinct} of {accepted})", distinct == accepted),
        (f"no two runs of a job overlapped ({overlaps} overlaps)", overlaps == 0),
    ]
    print(
        format_table(["check", "result"], [[what, "ok" if ok else "FAILED"] for what, ok in checks])
    )
    print(f"\n{accepted} jobs accepted, {runs} runs ({runs - distinct} reruns after strikes), "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    return 0 if all(ok for _, ok in checks) else 1


def _done(db: psycopg.Connection[Any]) -> int:
    (done,) = db.execute("SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'").fetchone()  # type: ignore[misc]
    return int(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=2000, help="jobs to defer, half before, half during"
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes kept running")
    parser.add_argument(
        "--seconds", type=float, default=60, help="how long the chaos lasts at most"
    )
    parser.add_argument("--kill-every", type=float, default=1.0, help="seconds between strikes")
    parser.add_argument(
        "--calm", type=float, default=30, help="seconds allowed to finish after the chaos"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (the strikes' order)")
    try:
        return run(parser.parse_args(argv))
    finally:
        embedded.stop_default_server()


if __name__ == "__main__":
    sys.exit(main())
