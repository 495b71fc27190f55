"""What the notebook tests need before nbval starts a kernel.

matplotlib builds a font cache the first time it is imported on a machine and
says so on stderr ("Matplotlib is building the font cache; this may take a
moment."). Inside a notebook that message would become an output of the first
cell importing matplotlib, and nbval, comparing outputs strictly, would fail
on a fresh machine only. Importing matplotlib here builds the cache once, in
pytest's process, before any kernel starts; the kernels then find it.
"""

from __future__ import annotations

import matplotlib.font_manager  # noqa: F401  (imported for its side effect: the font cache)
