"""Write docs/compatibility.md from comparing pgqueue_ref with procrastinate 3.10 and
PgQueuer 1.6 as installed (``pip install -e ".[bench]"``).

    python tools/compatibility_table.py

Refuses to write while a verdict lacks its note (see ``tests/compat_table.py``);
``tests/test_compatibility.py`` fails when the committed page is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import compat_table


def main() -> int:
    computed = compat_table.verdicts()
    problems = compat_table.problems(computed)
    if problems:
        print("not writing the page:", *problems, sep="\n  ")
        return 1
    compat_table.DOC.write_text(compat_table.render(computed), encoding="utf-8")
    print(f"wrote {compat_table.DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
