"""Chaos: workers killed, cut off and the server crashed at random while jobs flow;
then check that nothing was lost and nothing ran in two places.

    python tools/chaos.py --jobs 5000 --workers 4 --seconds 120

Starts its own throwaway PostgreSQL with stock settings (``fsync`` and
``synchronous_commit`` on: it is crashed on purpose, and must keep what it
acknowledged), defers jobs before and during the run, and keeps ``--workers``
worker processes going (``python -m pgqueue_ref --app chaos_app:app worker``,
the app of tests/reliability/chaos_app.py, whose task records every run).
Each worker slot connects through a TCP proxy of its own
(:class:`pgqueue_ref.testing.PartitionProxy`), so one worker can be cut off while the
others go on. Every ``--kill-every`` seconds it does one thing, chosen with
``--seed``:

* SIGKILL a worker (its jobs wait for the stale-heartbeat timeout), or
* SIGTERM a worker (graceful: it finishes or hands back its jobs), or
* ``pg_terminate_backend`` one worker connection, or all of them, or
* crash the server (``pg_ctl stop -m immediate``, just after a defer was
  acknowledged) and start it again on the same data folder and port, or
* partition one worker's proxy (bytes held, sockets left open) for longer than
  ``stalled_after`` (the worker must fence itself before its jobs are handed
  to another), or for less than the fence's ``stalled_after / 2``;

and it restarts workers that are gone. ``--strikes`` picks the kinds. When
every job has run (or time is up) it stops the workers and checks, from the
database and from the runs' own log:

* accepted = done: every deferred job whose id came back ended ``succeeded``,
  and no other job exists;
* every job ran at least once;
* no two runs of one job overlapped in time, counting every run from its start
  to its end however it ended (cancelled by a fence or a shutdown, or failed);
* no worker exited with an error.

Bounded in count and time; all traffic goes to the local server. Exit code 0
when the checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgqueue_ref._table import format_table
from pgqueue_ref.embedded import EmbeddedPostgres
from pgqueue_ref.sql import SCHEMA
from pgqueue_ref.testing import PartitionProxy

APP_DIR = ROOT / "tests" / "reliability"
sys.path.insert(0, str(APP_DIR))

from chaos_app import RUNS_TABLE

STALLED_AFTER = 3.0  # the workers' --stalled-after; they fence at half of it
FENCE_AFTER = STALLED_AFTER / 2

STRIKES = {
    "sigkill": "SIGKILL a worker",
    "sigterm": "SIGTERM a worker",
    "backend": "kill one backend",
    "backends": "kill all backends",
    "crash": "crash the server and restart it",
    "partition": "partition a worker past stalled_after",
    "blip": "partition a worker for less than the fence",
}

# Every run, from its start to its end however it ended: the runs' own log
# (cancelled and failed runs write nothing to the database), and a row of
# `runs` for a run whose log line was lost (its worker SIGKILLed just after).
INTERVALS = """
CREATE TEMP VIEW intervals AS
SELECT run_id, job_id, pid, started, ended, how FROM attempts
UNION ALL
SELECT r.run_id, r.job_id, r.pid, r.started, r.finished, 'ok, no log line' FROM runs r
 WHERE NOT EXISTS (SELECT FROM attempts a WHERE a.run_id = r.run_id)
"""
OVERLAPS = """
SELECT a.job_id, a.pid, a.how, a.started, a.ended, b.pid, b.how, b.started, b.ended
  FROM intervals a JOIN intervals b
    ON a.job_id = b.job_id AND a.run_id < b.run_id
   AND a.started < b.ended AND b.started < a.ended
"""
# A write that a cancelled run had in flight, and that landed anyway.
LATE_WRITES = """
SELECT count(*), count(*) FILTER (WHERE EXISTS (
         SELECT FROM intervals o WHERE o.job_id = r.job_id AND o.run_id <> r.run_id
            AND o.started < r.finished AND o.started > a.started))
  FROM runs r JOIN attempts a USING (run_id) WHERE a.how <> 'ok'
"""
FENCE_LOG = re.compile(r"fenced itself: .*?it cancelled (\d+) running async jobs and dropped (\d+)")
ACROSS_LOG = re.compile(r"dropped (\d+) jobs claimed across a fence")


class Proxies:
    """One PartitionProxy per worker slot, served by an event loop in a thread."""

    def __init__(self, dsn: str, count: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        host_port = psycopg.conninfo.conninfo_to_dict(dsn)
        upstream = (str(host_port["host"]), int(host_port["port"]))  # type: ignore[call-overload]
        self.proxies = [PartitionProxy(*upstream) for _ in range(count)]
        for proxy in self.proxies:
            self._call(proxy.__aenter__())
        self.dsns = [proxy.dsn_for(dsn) for proxy in self.proxies]

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def partition(self, slot: int) -> None:
        self.loop.call_soon_threadsafe(self.proxies[slot].partition)

    def heal(self, slot: int) -> None:
        self.loop.call_soon_threadsafe(self.proxies[slot].heal)

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.heal()
            self._call(proxy.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Chaos:
    server: EmbeddedPostgres
    proxies: Proxies
    rng: random.Random
    kinds: list[str]
    folder: Path  # worker logs and the runs' log
    slots: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    partitioned: dict[int, float] = field(default_factory=dict)  # slot -> heal at (monotonic)
    actions: dict[str, int] = field(default_factory=dict)
    logs: dict[int, Path] = field(default_factory=dict)  # pid -> its stderr
    failures: list[str] = field(default_factory=list)  # the last line of each error exit
    accepted: set[int] = field(default_factory=set)  # ids that defer returned
    db: psycopg.Connection[Any] | None = None

    def __post_init__(self) -> None:
        self.slots = [None] * len(self.proxies.dsns)
        self.connect()

    def connect(self) -> psycopg.Connection[Any]:
        if self.db is not None:
            self.db.close()
        self.db = psycopg.connect(self.server.dsn_url, autocommit=True)
        return self.db

    def start_worker(self, slot: int) -> None:
        env = {
            **os.environ,
            "PGQUEUE_REF_DSN": self.proxies.dsns[slot],
            "PYTHONPATH": str(APP_DIR),
            "PGQUEUE_REF_CHAOS_ATTEMPTS": str(self.folder),
        }
        command = [sys.executable, "-m", "pgqueue_ref", "--app", "chaos_app:app", "worker",
                   "--concurrency", "4", "--stalled-after", str(STALLED_AFTER),
                   "--heartbeat-interval", "0.3", "--shutdown-timeout", "5"]  # fmt: skip
        log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log", dir=self.folder)[1])
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, env=env, stderr=stderr)
        self.logs[process.pid] = log
        self.slots[slot] = process

    def keep_workers_up(self) -> None:
        for slot, process in enumerate(self.slots):
            if process is not None:
                code = process.poll()
                if code is None:
                    continue
                if code == -signal.SIGTERM:  # before its handler was installed
                    self.count("SIGTERM while starting: stopped at once")
                elif code not in (0, -signal.SIGKILL):
                    self.count("worker exited with an error")
                    lines = self.logs[process.pid].read_text(errors="replace").strip().splitlines()
                    self.failures.append(lines[-1] if lines else f"exit code {code}")
            self.start_worker(slot)

    def heal_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        for slot, heal_at in list(self.partitioned.items()):
            if everything or heal_at <= now:
                self.proxies.heal(slot)
                del self.partitioned[slot]

    def count(self, action: str, n: int = 1) -> None:
        if n:
            self.actions[action] = self.actions.get(action, 0) + n

    def defer(self, jobs: int) -> None:
        assert self.db is not None
        rows = self.db.execute(
            "INSERT INTO pgqueue_jobs (task_name, args) SELECT 'record', "
            "jsonb_build_object('seconds', %s::float * random()) FROM generate_series(1, %s) "
            "RETURNING id",
            [0.05, jobs],
        ).fetchall()
        self.accepted.update(row[0] for row in rows)

    def done(self) -> int:
        assert self.db is not None
        (done,) = self.db.execute(  # type: ignore[misc]
            "SELECT count(*) FROM pgqueue_jobs WHERE status = 'succeeded'"
        ).fetchone()
        return int(done)

    def strike(self) -> None:
        assert self.db is not None
        kinds = self.kinds
        free = [slot for slot in range(len(self.slots)) if slot not in self.partitioned]
        if len(self.partitioned) >= len(self.slots) - 1:  # one worker at least stays connected
            kinds = [k for k in kinds if k not in ("partition", "blip")] or ["sigterm"]
        kind = self.rng.choice(kinds)
        victim = self.slots[self.rng.randrange(len(self.slots))]
        assert victim is not None
        if kind == "sigkill":
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        elif kind == "sigterm":
            victim.send_signal(signal.SIGTERM)
        elif kind in ("backend", "backends"):
            limit = "LIMIT 1" if kind == "backend" else ""
            self.db.execute(f"""
                SELECT pg_terminate_backend(pid) FROM (
                    SELECT pid FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                    ORDER BY random() {limit}) AS victims""")  # fmt: skip
        elif kind == "crash":
            self.defer(10)  # acknowledged just before the crash: must survive it
            crash_and_restart(self.server, down=self.rng.uniform(0.2, 2.5))
            self.connect()
        else:
            slot = self.rng.choice(free)
            if kind == "partition":
                seconds = self.rng.uniform(STALLED_AFTER * 1.2, STALLED_AFTER * 2)
            else:
                seconds = self.rng.uniform(0.2, FENCE_AFTER * 0.6)
            self.proxies.partition(slot)
            self.partitioned[slot] = time.monotonic() + seconds
        self.count(STRIKES[kind])

    def stop(self) -> None:
        self.heal_due(everything=True)
        running = [p for p in self.slots if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                self.count("worker did not stop within 30 s")
        self.keep_workers_up_check_only()

    def keep_workers_up_check_only(self) -> None:
        for process in self.slots:
            if process is not None and process.poll() not in (0, -signal.SIGKILL, -signal.SIGTERM):
                self.count("worker exited with an error")
                lines = self.logs[process.pid].read_text(errors="replace").strip().splitlines()
                self.failures.append(lines[-1] if lines else f"exit code {process.returncode}")

    def fenced(self) -> tuple[int, int]:
        """From the workers' logs: fences, and the jobs they cancelled or dropped."""
        fences = jobs = 0
        for log in self.logs.values():
            text = log.read_text(errors="replace")
            for cancelled, dropped in FENCE_LOG.findall(text):
                fences += 1
                jobs += int(cancelled) + int(dropped)
            jobs += sum(int(n) for n in ACROSS_LOG.findall(text))
        return fences, jobs


def crash_and_restart(server: EmbeddedPostgres, down: float) -> None:
    """``pg_ctl stop -m immediate`` (no checkpoint, backends killed: a crash), then
    the same server again on the same data folder and port, after ``down`` seconds."""
    pg_ctl = [str(server.bindir / "pg_ctl"), "stop", "-D", f"{server.base_dir}/data",
              "-m", "immediate", "-w", "-t", "30"]  # fmt: skip
    subprocess.run(server._as_server_user(pg_ctl), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip
    server.child_process.wait(30)
    server.child_process = None
    if server._watchdog is not None:
        server._watchdog.wait(10)  # it ends with the server; start() makes a new one
    time.sleep(down)
    server.start()  # crash recovery from the WAL, then it answers again


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    kinds = args.strikes.split(",")
    unknown = set(kinds) - set(STRIKES)
    if unknown:
        raise SystemExit(f"unknown strikes {sorted(unknown)}; known: {', '.join(STRIKES)}")
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    folder.chmod(0o711)  # as root the server runs as nobody, who must reach folder/pg
    # Stock settings: fsync on, a crash must not lose a commit. Its own folder, not one
    # named like the kit's: while it is down, another process starting a server would
    # take it for a killed run's leftovers (no live postmaster) and remove it.
    server = EmbeddedPostgres(base_dir=str(folder / "pg"))
    proxies = Proxies(server.dsn_url, args.workers)
    chaos = Chaos(server, proxies, rng, kinds, folder)
    try:
        db = chaos.connect()
        settings = dict(db.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'full_page_writes')"
        ).fetchall())  # fmt: skip
        if set(settings.values()) != {"on"}:
            raise SystemExit(f"the chaos server must be crash-safe, got {settings}")
        db.execute(SCHEMA)
        db.execute(RUNS_TABLE)
        chaos.defer(args.jobs // 2)
        chaos.keep_workers_up()
        started = time.monotonic()
        deadline = started + args.seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(args.kill_every)
                chaos.heal_due()
                if len(chaos.accepted) < args.jobs:  # the other half arrives during the chaos
                    chaos.defer(min(args.jobs - len(chaos.accepted), max(1, args.jobs // 20)))
                if len(chaos.accepted) >= args.jobs and chaos.done() == len(chaos.accepted):
                    break
                chaos.strike()
                chaos.keep_workers_up()
                print(f"\r{time.monotonic() - started:5.1f} s: {chaos.done()}/{len(chaos.accepted)} "
                      f"done, {sum(chaos.actions.values())} strikes", end="", flush=True)  # fmt: skip
            # Calm after the storm: let the survivors (and the stalled-job recovery) finish.
            chaos.heal_due(everything=True)
            calm_until = time.monotonic() + args.calm
            while chaos.done() < len(chaos.accepted) and time.monotonic() < calm_until:
                chaos.keep_workers_up()
                time.sleep(0.2)
            if chaos.done() < len(chaos.accepted):  # who holds what is left, before the stop
                assert chaos.db is not None
                print("\n" + format_table(["status", "worker", "its heartbeat, s ago", "jobs"],
                    chaos.db.execute(
                        "SELECT j.status, j.worker_id, round(extract(epoch FROM now() - "
                        "w.heartbeat_at)::numeric, 1), count(*) FROM pgqueue_jobs j LEFT JOIN "
                        "pgqueue_workers w ON w.id = j.worker_id WHERE j.status <> 'succeeded' "
                        "GROUP BY 1, 2, 3 ORDER BY 1, 2").fetchall()))  # fmt: skip
        finally:
            chaos.stop()
        elapsed = time.monotonic() - started
        db = chaos.connect()
        print()
        code = report(chaos, db, elapsed)
        if code:
            print(f"worker logs and the runs' log kept in {folder}")
            folder = Path()  # not removed below
        return code
    finally:
        proxies.close()
        if chaos.db is not None:
            chaos.db.close()
        server.stop()
        if folder != Path():
            shutil.rmtree(folder, ignore_errors=True)


def report(chaos: Chaos, db: psycopg.Connection[Any], elapsed: float) -> int:
    accepted = chaos.accepted
    statuses = db.execute(
        "SELECT status, count(*) FROM pgqueue_jobs GROUP BY 1 ORDER BY 1"
    ).fetchall()
    succeeded = {
        row[0] for row in db.execute("SELECT id FROM pgqueue_jobs WHERE status = 'succeeded'")
    }
    runs, distinct = db.execute("SELECT count(*), count(DISTINCT job_id) FROM runs").fetchone()  # type: ignore[misc]
    db.execute("CREATE TEMP TABLE attempts (run_id text, job_id bigint, pid integer, "
               "started timestamptz, ended timestamptz, how text)")  # fmt: skip
    with db.cursor().copy("COPY attempts FROM STDIN") as copy:
        for log in chaos.folder.glob("*.tsv"):
            copy.write(log.read_bytes())
    db.execute(INTERVALS)
    how = dict(db.execute("SELECT how, count(*) FROM intervals GROUP BY 1").fetchall())
    overlaps = db.execute(OVERLAPS).fetchall()
    late, late_after_other = db.execute(LATE_WRITES).fetchone()  # type: ignore[misc]
    fences, fenced_jobs = chaos.fenced()

    print(format_table(["what happened", "times"], sorted(chaos.actions.items())))
    for failure in chaos.failures:
        print(f"  worker error: {failure}")
    print()
    print(format_table(["status", "jobs"], statuses))
    print()
    print(format_table(["runs, by how they ended", "runs"], sorted(how.items())))
    print(f"\nfences: {fences}, jobs given up by them (cancelled or dropped): {fenced_jobs}; "
          f"writes of cancelled or failed runs that landed anyway: {late} "
          f"({late_after_other} after another run of the job started)")  # fmt: skip
    for overlap in overlaps[:10]:
        print("  overlap: job {}: pid {} {} {}..{} / pid {} {} {}..{}".format(*overlap))
    print()
    errors = chaos.actions.get("worker exited with an error", 0)
    checks = [
        ("accepted = done (all succeeded, none left)",
         succeeded == accepted and statuses == [("succeeded", len(accepted))]),
        (f"every job ran at least once ({distinct} of {len(accepted)})", distinct == len(accepted)),
        (f"no two runs of a job overlapped ({len(overlaps)} overlaps)", not overlaps),
        (f"no worker exited with an error ({errors})", errors == 0),
    ]  # fmt: skip
    print(
        format_table(["check", "result"], [[what, "ok" if ok else "FAILED"] for what, ok in checks])
    )
    lost = sorted(accepted - succeeded)
    if lost:
        print(f"  accepted but not succeeded: {lost[:20]}{' ...' if len(lost) > 20 else ''}")
    print(f"\n{len(accepted)} jobs accepted, {runs} runs ({runs - distinct} reruns after strikes), "
          f"{elapsed:.1f} s")  # fmt: skip
    return 0 if all(ok for _, ok in checks) else 1


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
    parser.add_argument(
        "--strikes", default=",".join(STRIKES), help=f"comma-separated kinds: {', '.join(STRIKES)}"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
