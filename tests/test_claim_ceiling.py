"""A short run of tools/claim_ceiling.py: its figures are in docs/benchmarks.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_run_drains_and_claims_every_job_and_prints_each_ratio() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "claim_ceiling.py"), "--jobs", "400", "--repeat", "1"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    # Each measurement asserts that every job was drained, or claimed, exactly once.
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \| ([\d.]+)x \|$", done.stdout, re.MULTILINE)
    assert [name for name, _, _ in rows] == [
        "App face drain (AsyncpgConnector)",
        "Queue face drain (AsyncpgPoolDriver, batch_size=10)",
        "claims alone, 10 per round trip, 1 connection",
        "claims alone, 10 per round trip, 2 connections",
        "claims alone, 10 per round trip, 4 connections",
        "claims alone, 800 per round trip, 1 connection",
    ]
    assert rows[0][2] == "1.00"
    assert all(int(rate.replace(",", "")) > 0 for _, rate, _ in rows)
    assert "round 1 of 1 done" in done.stderr
