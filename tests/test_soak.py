"""A short run of tools/soak.py: the 2M-job figures are in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_soak_runs_every_job_once_and_keeps_what_it_should(tmp_path: Path) -> None:
    output, plot = tmp_path / "soak.json", tmp_path / "soak.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "soak.py"), "--jobs", "3000", "--batch", "500",
         "--retention", "successful", "never", "--sample-every", "0.2",
         "--output", str(output), "--plot", str(plot)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    successful, never = json.loads(output.read_text())

    for result in (successful, never):
        assert (result["ran"], result["repeats"], result["unfinished"]) == (3000, 0, 0)
        assert len(result["rate_per_tenth"]) == 10 and min(result["rate_per_tenth"]) > 0
        assert result["samples"][-1]["done"] == 3000
    assert (successful["jobs_left_in_table"], never["jobs_left_in_table"]) == (0, 3000)
    # Deleted rows are dead tuples until VACUUM, which then cuts the empty tail;
    # kept rows stay, and with them the file.
    assert successful["after_vacuum_total_mb"] < successful["end_total_mb"]
    assert successful["after_vacuum_total_mb"] < never["after_vacuum_total_mb"]
    assert plot.stat().st_size > 10_000
    assert "[successful 100.0%]" in done.stderr  # progress is shown while it runs
    assert 'delete_jobs="successful"' in done.stdout and "no retention" in done.stdout
