"""A short run of tools/chaos.py: the long run's figures are in docs/guarantees.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chaos_short_run_loses_nothing() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "chaos.py"), "--jobs", "800", "--workers", "3",
         "--seconds", "30", "--kill-every", "0.3", "--calm", "30", "--seed", "7"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "accepted = done (all succeeded, none left)    ok" in result.stdout
    assert "no two runs of a job overlapped (0 overlaps)  ok" in result.stdout
    assert "worker exited with an error" not in result.stdout  # no worker died of a strike
