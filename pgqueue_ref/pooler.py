"""A throwaway PgBouncer in front of a PostgreSQL server, for tests, notebooks and benchmarks.

Most production PostgreSQL sits behind a transaction pooler (PgBouncer,
Supavisor, RDS Proxy): each *transaction* of a client borrows whichever server
connection is free, and gives it back at COMMIT. Two things a queue relies on
change there, and this module lets the kit show both on a real pooler:

* **LISTEN goes deaf.** The LISTEN is a session's, and the session's server
  connection goes back to the pool once the statement ends: NOTIFYs reach some
  other client's server connection, never the listener. The worker detects it
  and says so; ``listen_dsn=`` gives the listener a direct connection.
* **Prepared statements vanish.** A driver that prepares a statement on one
  server connection finds it missing on the next (PgBouncer before 1.21 does
  not track them): ``prepare_threshold=None`` for psycopg,
  ``statement_cache_size=0`` for asyncpg.

::

    with PgBouncer(server_dsn) as bouncer:         # pool_mode = transaction
        app = App(connector=PsycopgConnector(conninfo=bouncer.dsn, listen_dsn=server_dsn,
                                             kwargs={"prepare_threshold": None}))

Like the embedded server, it runs as ``nobody`` when started as root (PgBouncer
refuses root too), listens on ``127.0.0.1`` on a free port, trusts the server's
users, and is stopped (and its folder removed) on :meth:`PgBouncer.stop`. It
needs the ``pgbouncer`` program (Debian and Ubuntu: ``apt-get install pgbouncer``;
there is no wheel), found on ``PATH`` or in ``/usr/sbin``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .embedded import EmbeddedPostgresError, _chown_tree, _unprivileged_ids

__all__ = ["PgBouncer", "PgBouncerError", "find_pgbouncer", "pgbouncer_version"]

#: Where Debian puts the program, which is not on a user's PATH there.
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin")


class PgBouncerError(EmbeddedPostgresError):
    """PgBouncer could not be found or started (an
    :class:`~pgqueue_ref.embedded.EmbeddedPostgresError`)."""


_SHOW: dict[str, Literal["SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW DATABASES"]] = {
    "POOLS": "SHOW POOLS",
    "CLIENTS": "SHOW CLIENTS",
    "SERVERS": "SHOW SERVERS",
    "DATABASES": "SHOW DATABASES",
}


def find_pgbouncer() -> str | None:
    """The path of the ``pgbouncer`` program, or None when it is not installed."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    for folder in SEARCH_DIRS:
        candidate = Path(folder) / "pgbouncer"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def pgbouncer_version(program: str) -> tuple[int, ...]:
    """``pgbouncer --version``'s first line, ``PgBouncer 1.18.0``, as ``(1, 18, 0)``."""
    done = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"PgBouncer (\d+(?:\.\d+)*)", done.stdout)
    if found is None:
        raise PgBouncerError(f"{program} --version said {done.stdout.strip()!r}: not PgBouncer?")
    return tuple(int(part) for part in found.group(1).split("."))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PgBouncer:
    """PgBouncer in ``pool_mode`` (``transaction`` by default) in front of ``server_dsn``.

    :attr:`dsn` names the same user and database as ``server_dsn``, through
    PgBouncer. Every database name is
    forwarded to the server (``* = host=... port=...``), so scratch databases
    made later work through it too.
    """

    def __init__(
        self,
        server_dsn: str,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        program: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.server_dsn = server_dsn
        self.pool_mode = pool_mode
        program = program or find_pgbouncer()
        if program is None:
            raise PgBouncerError(
                "pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer; "
                "macOS: brew install pgbouncer); there is no wheel of it on PyPI."
            )
        server = conninfo_to_dict(server_dsn)
        self.user = str(server.get("user") or "postgres")
        self.port = _free_port()
        #: ``server_dsn``'s user and database through the pooler (see :meth:`dsn_for`).
        self.dsn = self.dsn_for(server_dsn)
        self._folder = Path(tempfile.mkdtemp(prefix="pgqueue_ref-pgbouncer-"))
        self.version = pgbouncer_version(program)
        #: The configuration it runs with (removed with its folder by :meth:`stop`).
        self.config_path = self._folder / "pgbouncer.ini"
        self._write_config(server, pool_size)
        command = [program, str(self.config_path)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root, as PostgreSQL does
            uid, gid = _unprivileged_ids()
            os.chmod(self._folder, 0o755)
            _chown_tree(self._folder, uid, gid)
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise PgBouncerError("running as root: PgBouncer needs `setpriv` (util-linux)")
            command = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_until_listening(start_timeout)

    def dsn_for(self, dsn: str) -> str:
        """``dsn``'s user and database through this PgBouncer, as a URL (which every
        driver reads): ``postgresql://<user>@127.0.0.1:<port>/<dbname>``. Any database
        of the server will do; a password is not carried over (PgBouncer trusts its
        clients and logs in as them)."""
        params = conninfo_to_dict(dsn)
        user = str(params.get("user") or self.user)
        dbname = str(params.get("dbname") or user)
        return f"postgresql://{quote(user)}@127.0.0.1:{self.port}/{quote(dbname)}"

    def _write_config(self, server: Mapping[str, object], pool_size: int) -> None:
        host = server.get("host") or "127.0.0.1"
        port = server.get("port") or "5432"
        (self._folder / "users.txt").write_text(f'"{self.user}" ""\n')
        self.config_path.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self._folder / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            # Sent by psycopg and asyncpg at connect; PgBouncer refuses unknown ones.
            "ignore_startup_parameters = extra_float_digits,options\n"
            # May read the admin console (SHOW POOLS, ...): see show().
            f"stats_users = {self.user}\n"
            f"logfile = {self._folder / 'pgbouncer.log'}\n"
            # 1.21 learnt to track prepared statements (on by default from 1.24); the kit's
            # pooler keeps the classic behaviour that the lessons and tests show, on every
            # version. 1.18 refuses settings it does not know, so only where it exists.
            + ("max_prepared_statements = 0\n" if self.version >= (1, 21) else "")
        )

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PgBouncerError(
                    f"pgbouncer exited with code {self._process.returncode}: {self.log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PgBouncerError(f"pgbouncer did not listen on port {self.port} within {timeout} s")

    def show(
        self, what: Literal["POOLS", "CLIENTS", "SERVERS", "DATABASES"]
    ) -> list[dict[str, Any]]:
        """The rows of ``SHOW <what>`` on PgBouncer's admin console (the database
        named ``pgbouncer``): what the pooler itself says it carries. ``SHOW POOLS``
        has a row per (database, user) that a client reached through it."""
        console = f"postgresql://{quote(self.user)}@127.0.0.1:{self.port}/pgbouncer"
        # The console speaks the simple query protocol only: nothing to prepare.
        with psycopg.connect(console, autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.execute(_SHOW[what])
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def log(self) -> str:
        """What PgBouncer wrote to its log file so far."""
        try:
            return (self._folder / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop PgBouncer and remove its folder; harmless when already stopped."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
