"""Write docs/connectors.md from a fresh run of the conformance suite.

    python tools/support_table.py

Runs ``tests/conformance`` with ``PGQUEUE_REF_UPDATE_SUPPORT_TABLE=1``: its
last test then writes the table from the results of that very run, and
refuses to if any test failed (see ``tests/conformance/support_table.py``).
Without the variable the same test only compares, so the normal test run
fails when the committed table is out of date.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    os.environ["PGQUEUE_REF_UPDATE_SUPPORT_TABLE"] = "1"
    return int(pytest.main(["-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "conformance")]))


if __name__ == "__main__":
    sys.exit(main())
