"""What the notebook tests need before nbval starts a kernel.

matplotlib builds a font cache the first time it is imported on a machine and
says so on stderr ("Matplotlib is building the font cache; this may take a
moment."). Inside a notebook that message would become an output of the first
cell importing matplotlib, and nbval, comparing outputs strictly, would fail
on a fresh machine only. Importing matplotlib here builds the cache once, in
pytest's process, before any kernel starts; the kernels then find it.

A notebook that starts a PgBouncer (``PgBouncer(`` in a code cell) needs the
``pgbouncer`` program, which has no wheel: where it is not installed, each of
that notebook's cells is skipped, with the reason, instead of failing on its
stored outputs. ``PGQUEUE_REF_REQUIRE_PGBOUNCER`` (CI sets it) turns the skip
off, so that there the notebook runs and its setup cell's error says what is
missing.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import matplotlib.font_manager  # noqa: F401  (imported for its side effect: the font cache)
import pytest

from pgqueue_ref.pooler import find_pgbouncer

#: Set (CI sets it) to run the PgBouncer notebooks even where pgbouncer is missing.
REQUIRE_PGBOUNCER_ENV = "PGQUEUE_REF_REQUIRE_PGBOUNCER"


def pytest_configure(config: pytest.Config) -> None:
    """pyproject.toml names the sanitize file relative to the repository root;
    read it from there whatever folder pytest was started in."""
    sanitize = config.option.nbval_sanitize_with
    if sanitize and not Path(sanitize).exists() and (config.rootpath / sanitize).exists():
        config.option.nbval_sanitize_with = str(config.rootpath / sanitize)


@functools.cache
def _needs_pgbouncer(path: Path) -> bool:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return any("PgBouncer(" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.suffix != ".ipynb" or not _needs_pgbouncer(item.path):
        return
    if find_pgbouncer() is None and not os.environ.get(REQUIRE_PGBOUNCER_ENV):
        pytest.skip(
            f"{item.path.name} needs pgbouncer, which is not installed "
            "(Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install pgbouncer)"
        )
