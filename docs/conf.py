"""Sphinx configuration: the site is built from docs/ and the notebooks themselves.

Build it (strict: any warning, including a broken reference, fails):

    .venv/bin/sphinx-build -n -W --keep-going -c docs . build/docs

The source directory is the repository root, narrowed by include_patterns to
docs/ and notebooks/, so the executed notebooks are pages as they are: their
stored outputs are the ones nbval checks in every test run, so the site
cannot drift from what runs (nb_execution_mode = "off": nothing is re-run).
"""

from __future__ import annotations

project = "pgqueue_ref"
author = "the pgqueue_ref developers"
root_doc = "docs/index"
include_patterns = ["docs/**", "notebooks/*.ipynb"]
exclude_patterns = ["**/.ipynb_checkpoints", "docs/conf.py", "build", ".venv"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
nb_execution_mode = "off"
myst_heading_anchors = 3
html_theme = "furo"
html_title = "pgqueue_ref"
# The support table's compact layout (docs/connectors.md wraps it in a div of this class).
html_static_path = ["_static"]
html_css_files = ["support-table.css"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# No network at build time (no intersphinx): types of other packages cannot
# be resolved, so they are not checked; references to our own names are.
nitpick_ignore_regex = [
    ("py:.*", r"(psycopg|psycopg_pool|psycopg2|asyncpg|aiopg|sqlalchemy|pytest|testing)\..*"),
    (
        "py:.*",
        r"(_?asyncio|collections\.abc|concurrent|datetime|enum|logging|pathlib|types|typing)\..*",
    ),
    ("py:.*", r"(threading|starlette|uvicorn|jinja2|prometheus_client)\..*"),  # the dashboard
    (
        "py:.*",
        r"(Any|Self|T|C|Params|Row|Measure|_Method|Callable|Coroutine|Awaitable|Sequence|Mapping)",
    ),
    ("py:.*", r"(TextIO|Path|ModuleType|TracebackType|Generator|Iterator|AsyncIterator|NoReturn)"),
    ("py:.*", r"(pgqueue_ref\.)?.*\.[TCP]"),
    ("py:.*", r"(pgqueue_ref\.(\w+\.)+)?_\w+"),  # private helpers named in signatures
    ("py:.*", r"(Pool|Engine)"),  # each driver module's alias for its pool's class
]
