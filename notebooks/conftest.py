"""What the notebook tests need before nbval starts a kernel.

matplotlib builds a font cache the first time it is imported on a machine and
says so on stderr ("Matplotlib is building the font cache; this may take a
moment."). Inside a notebook that message would become an output of the first
cell importing matplotlib, and nbval, comparing outputs strictly, would fail
on a fresh machine only. Importing matplotlib here builds the cache once, in
pytest's process, before any kernel starts; the kernels then find it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.font_manager  # noqa: F401  (imported for its side effect: the font cache)
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """pyproject.toml names the sanitize file relative to the repository root;
    read it from there whatever folder pytest was started in."""
    sanitize = config.option.nbval_sanitize_with
    if sanitize and not Path(sanitize).exists() and (config.rootpath / sanitize).exists():
        config.option.nbval_sanitize_with = str(config.rootpath / sanitize)
