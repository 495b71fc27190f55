"""Check that a CI leg tests the Python and PostgreSQL it claims, and print them.

    python .ci/versions.py 3.13 18

The server is the one the test run will get: PGQUEUE_REF_DSN's if set, else a
throwaway one started as conftest.py starts it (binaries from find_bindir(),
so PGQUEUE_REF_PG_BINDIR counts). Exits non-zero on any other version.
"""

from __future__ import annotations

import os
import platform
import sys

import psycopg

from pgqueue_ref.embedded import DSN_ENV, EmbeddedPostgres


def server_version(dsn: str) -> tuple[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def main(python: str, postgres: str) -> int:
    if os.environ.get(DSN_ENV):
        where = f"{DSN_ENV}"
        version, number = server_version(os.environ[DSN_ENV])
    else:
        with EmbeddedPostgres(fast=True) as server:
            where = f"embedded, from {server.bindir}"
            version, number = server_version(server.dsn_url)
    running = ".".join(platform.python_version_tuple()[:2])
    print(
        f"CI leg: Python {platform.python_version()} ({sys.executable}), "
        f"PostgreSQL {version} ({where})",
        flush=True,
    )
    if running != python or str(number // 10000) != postgres:
        print(f"CI leg: expected Python {python} and PostgreSQL {postgres}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
