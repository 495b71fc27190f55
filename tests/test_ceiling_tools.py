"""Short runs of tools/claim_ceiling.py and tools/drain_ceiling.py, whose figures are
in docs/benchmarks.md. Each measurement in them checks that every job was drained, or
claimed, exactly once (and, after a drain, that none is left): a run that exits 0
passed those checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _short_run(tool: str, subjects: list[str]) -> str:
    """Run ``tool`` on 400 jobs, once: its table of rates names ``subjects`` in this
    order, the first over itself. Returns its stdout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), "--jobs", "400", "--repeat", "1"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "round 1 of 1 done" in done.stderr
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| ([\d.]+)x \|", done.stdout, re.MULTILINE)
    assert rows[0][2] == "1.00"  # the first subject is the one the others are over
    assert all(int(rate.replace(",", "")) > 0 for _, rate, _ in rows)
    assert [name for name, _, _ in rows] == subjects
    return done.stdout


def test_claim_ceiling_drains_and_claims_every_job_and_prints_each_ratio() -> None:
    _short_run(
        "claim_ceiling.py",
        [
            "App face drain (AsyncpgConnector)",
            "Queue face drain (AsyncpgPoolDriver, batch_size=10)",
            "claims alone, 10 per round trip, 1 connection",
            "claims alone, 10 per round trip, 2 connections",
            "claims alone, 10 per round trip, 4 connections",
            "claims alone, 800 per round trip, 1 connection",
        ],
    )


def test_drain_ceiling_drains_every_job_once_and_prints_each_ratio_and_cost() -> None:
    stdout = _short_run(
        "drain_ceiling.py",
        [
            "minimal loop on our table (lock, run, delete: one transaction)",
            "our fetch_jobs + finish_jobs, bare (claim commits, outcome kept)",
            "the same, the outcome a delete (delete_statuses = {succeeded})",
            "App face drain (AsyncpgConnector, its default pool)",
            "App face drain, delete_jobs='successful'",
        ],
    )
    cpu = re.findall(r"^\| .+? \| [\d,]+ \| [\d.]+x \| ([\d.]+) \|$", stdout, re.MULTILINE)
    assert len(cpu) == 5 and all(float(micros) > 0 for micros in cpu)  # client CPU per job
    costs = re.findall(r"^\| ((?:minimal|our) [^|]+) \| ([\d,]+) \|$", stdout, re.MULTILINE)
    assert [name for name, _ in costs] == [
        "minimal loop: lock 100, delete them, commit",
        "our fetch_jobs: claim 100 (commits)",
        "our finish_jobs: 100 outcomes (commits)",
    ]
    assert all(int(micros.replace(",", "")) > 0 for _, micros in costs)
