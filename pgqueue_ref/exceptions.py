"""Every exception class pgqueue_ref defines, and the one place driver errors become ours.

The tree::

    PgQueueError
    ├── ConnectorException            the database or its driver failed
    │   ├── ConnectionFailed          could not connect (names host and port)
    │   ├── AlreadyEnqueued           a waiting job already holds this queueing lock
    │   │   └── DuplicateJobError     PgQueuer's name for it: this dedupe key is taken
    │   ├── ExternalConnectionError   configure(connection=...) cannot be used here
    │   ├── PreparedStatementError    a driver's prepared statement lost behind a transaction pooler
    │   └── ConnectorNotOpen          a query before app.open() / open_async()
    ├── ConfigurationError            the library was set up wrongly
    │   ├── SyncConnectorConfigurationError   a worker asked of a defer-only connector
    │   ├── AutocommitRequired        a driver got a non-autocommit connection (also a RuntimeError)
    │   ├── InvalidIdentifier         a name that is not a plain identifier (also a ValueError)
    │   │   ├── InvalidChannel        a LISTEN/NOTIFY channel name
    │   │   └── InvalidQueueName      a queue name
    │   ├── SyncCallInAsyncContext    a blocking call from inside a running event loop
    │   ├── InvalidCronExpression     a periodic task's or schedule's cron that croniter refuses (also a ValueError)
    │   ├── InvalidPeriodicTask       a periodic task whose function takes no timestamp (also a TypeError)
    │   ├── DriverNotInstalled        an optional driver's package is missing (also an ImportError)
    │   ├── DashboardNotInstalled     the dashboard asked for without its extra (also an ImportError)
    │   └── UnsafeDashboard           a dashboard on a non-local address without a token
    ├── JobAborted                    raised by a task that stops because it was asked to
    ├── UnserializableArguments       task arguments that are not JSON (also a TypeError)
    ├── TaskNotFound                  a job names a task its worker does not know
    ├── JobNotRetryable               retry_job asked of a job that is not 'failed'
    ├── JobNotFound                   waiting for a job that does not exist (also a LookupError)
    ├── EmbeddedPostgresError         the throwaway server could not start (also a RuntimeError)
    │   └── PgBouncerError            the throwaway PgBouncer could not start
    ├── UsageError                    a mistake on the command line (exit code 2)
    └── BenchError                    a benchmark subject failed a measurement or a check

Each class is defined in this module but four, which live beside the code
that raises them: ``EmbeddedPostgresError`` in ``pgqueue_ref.embedded``,
``PgBouncerError`` in ``pgqueue_ref.pooler``, ``UsageError`` in
``pgqueue_ref.cli`` and ``BenchError`` in ``pgqueue_ref.bench.runner``. A class that is also a built-in exception says
so: ``except ValueError`` (``ImportError``, ``TypeError``, ``RuntimeError``)
code catches it too. Wrong arguments to a function raise Python's own
``ValueError`` or ``TypeError``. ``tests/test_exceptions.py`` checks this tree,
and where each class is defined, against the classes themselves.

Drivers raise their own classes (``psycopg.Error``, ``psycopg2.Error``,
``asyncpg.PostgresError``, ``sqlalchemy.exc.DBAPIError``, ``OSError``...).
:func:`translate` maps any of them to the tree above by its SQLSTATE, through
the single table :data:`SQLSTATE_CLASSES`; the connector base class applies it
around every call, so no connector module repeats it. The driver's exception
stays available as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SQLSTATE_CLASSES",
    "AlreadyEnqueued",
    "AutocommitRequired",
    "ConfigurationError",
    "ConnectionFailed",
    "ConnectorException",
    "ConnectorNotOpen",
    "DashboardNotInstalled",
    "DriverNotInstalled",
    "DuplicateJobError",
    "ExternalConnectionError",
    "InvalidChannel",
    "InvalidCronExpression",
    "InvalidIdentifier",
    "InvalidPeriodicTask",
    "InvalidQueueName",
    "JobAborted",
    "JobNotFound",
    "JobNotRetryable",
    "PgQueueError",
    "PreparedStatementError",
    "SyncCallInAsyncContext",
    "SyncConnectorConfigurationError",
    "TaskNotFound",
    "UnsafeDashboard",
    "UnserializableArguments",
    "translate",
]


class PgQueueError(Exception):
    """Base class of every exception class pgqueue_ref defines."""


class ConnectorException(PgQueueError):
    """The database, or the driver talking to it, reported an error.

    ``sqlstate`` is PostgreSQL's five-character error code when there is one.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ConnectionFailed(ConnectorException):
    """The server could not be reached, or refused us (e.g. a wrong password)."""


class AlreadyEnqueued(ConnectorException):
    """A waiting job already holds this queueing lock (PgQueuer: dedupe key)."""


class DuplicateJobError(AlreadyEnqueued):
    """The Queue face's name (PgQueuer's): a waiting job already has this dedupe key.

    ``dedupe_key`` lists the keys of the refused enqueue, one per job (None
    for jobs without one), as PgQueuer does.
    """

    def __init__(
        self, message: str, *, dedupe_key: list[str | None], sqlstate: str | None = None
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.dedupe_key = dedupe_key


class ExternalConnectionError(ConnectorException):
    """``configure(connection=...)`` with a connector or a connection that cannot do it."""


class PreparedStatementError(ConnectorException):
    """A driver's prepared statement was missing, or already there, on the server
    connection: SQLSTATE 26000 or 42P05.

    psycopg 3 prepares a statement it has run five times, asyncpg every statement,
    on the server connection they hold. Behind a transaction pooler (PgBouncer in
    transaction mode before 1.21's ``max_prepared_statements``, Supavisor, RDS Proxy)
    the next transaction may run on another server connection, where it does not
    exist (or where another client's of the same name does). The message names the
    driver's setting that turns preparing off.
    """


class ConnectorNotOpen(ConnectorException):
    """The connector was used before it was opened."""


class ConfigurationError(PgQueueError):
    """pgqueue_ref was set up in a way that cannot work."""


class SyncConnectorConfigurationError(ConfigurationError):
    """A worker was asked of a connector that can only defer jobs."""


class AutocommitRequired(ConfigurationError, RuntimeError):
    """A Queue-face driver was handed a psycopg connection without autocommit.

    Also a ``RuntimeError``, which is what PgQueuer's drivers raise here: code
    written for PgQueuer that catches ``RuntimeError`` catches this too.
    """


class InvalidIdentifier(ConfigurationError, ValueError):
    """A name that must be a plain identifier (letters, digits, ``_``) is not one."""


class InvalidChannel(InvalidIdentifier):
    """A LISTEN/NOTIFY channel name that is not a plain identifier."""


class InvalidQueueName(InvalidIdentifier):
    """A queue name that is not a plain identifier."""


class SyncCallInAsyncContext(ConfigurationError):
    """A blocking method was called where it would block the running event loop."""


class InvalidCronExpression(ConfigurationError, ValueError):
    """A cron expression (``@app.periodic(cron=...)``, ``@pgq.schedule(..., expression)``)
    that croniter cannot read; the message names it."""


class InvalidPeriodicTask(ConfigurationError, TypeError):
    """``@app.periodic`` over a task whose function cannot take ``timestamp``."""


class DriverNotInstalled(ConfigurationError, ImportError):
    """A connector or driver whose database package is not installed.

    pgqueue_ref's core needs only psycopg 3; each other driver is an extra
    (``pip install "pgqueue_ref[asyncpg]"``), imported when first used. It is
    an ``ImportError`` too, so ``except ImportError`` code keeps working.
    """


class DashboardNotInstalled(ConfigurationError, ImportError):
    """The dashboard (``pgqueue_ref.dashboard``'s server, ``pgqueue-ref dashboard``)
    needs packages of the ``dashboard`` extra that are not installed: Starlette,
    uvicorn, Jinja2 and prometheus-client. The message names the one missing and
    the install line."""


class UnsafeDashboard(ConfigurationError):
    """A dashboard asked to listen on an address other machines can reach, without
    a token (or with one too short to stand guessing): anyone on the network could
    read the queue and act on its jobs. Pass a token, or listen on 127.0.0.1."""


class JobAborted(PgQueueError):
    """Raised by a task that stops early because its job was asked to abort
    (``app.job_manager.cancel_async(job_id, abort=True)``); the job ends 'aborted'."""


class UnserializableArguments(PgQueueError, TypeError):
    """Task arguments must be JSON: this one is not."""


class TaskNotFound(PgQueueError):
    """A job names a task that the worker running it does not have."""


class JobNotRetryable(PgQueueError):
    """``job_manager.retry_job_by_id[_async]`` of a job that does not exist or is not 'failed'."""


class JobNotFound(PgQueueError, LookupError):
    """Waiting for a job (``CompletionWatcher.wait_for``, ``wait_for_job_async``) that
    does not exist: never deferred, or deleted already."""


#: SQLSTATE (or its two-character class) -> our exception. Looked up by the
#: full code first ("3D000", "57P01"...), then by its class: "28P01" (a wrong
#: password) has no key of its own and is found under "28". A code found under
#: neither becomes a plain ConnectorException. A unique violation ("23505") is
#: not in the table: :func:`translate` makes it AlreadyEnqueued only when the
#: queueing-lock index refused the row.
SQLSTATE_CLASSES: dict[str, type[ConnectorException]] = {
    "08": ConnectionFailed,  # connection exception
    "28": ConnectionFailed,  # invalid authorization (wrong password, no such user)
    "3D000": ConnectionFailed,  # the database does not exist
    "57P01": ConnectionFailed,  # admin shutdown: pg_terminate_backend, server stop
    "57P02": ConnectionFailed,  # crash shutdown
    "57P03": ConnectionFailed,  # cannot connect now (starting up)
}

#: The setting that stops each driver preparing statements, by the driver's package.
PREPARE_SETTINGS: dict[str, str] = {
    "psycopg": (
        "psycopg prepares a statement it has run 5 times: turn it off with prepare_threshold=None, "
        'e.g. PsycopgConnector(conninfo=..., kwargs={"prepare_threshold": None}), or '
        "psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None) for a driver"
    ),
    "asyncpg": (
        "asyncpg prepares and caches every statement: turn the cache off with "
        "statement_cache_size=0, e.g. AsyncpgConnector(dsn=..., statement_cache_size=0), or "
        "asyncpg.connect(dsn, statement_cache_size=0) / create_pool(..., statement_cache_size=0) "
        "for a driver"
    ),
}

#: The unique index that enforces queueing locks (see sql/schema.sql).
QUEUEING_LOCK_INDEX = "pgqueue_jobs_queueing_lock_idx"

# Modules whose exceptions are driver errors, by top-level package name.
_DRIVER_PACKAGES = frozenset(
    {"psycopg", "psycopg2", "psycopg_pool", "asyncpg", "aiopg", "sqlalchemy"}
)


def _sqlstate(error: BaseException) -> str | None:
    # psycopg 3 and asyncpg call it sqlstate; psycopg2 (and so aiopg) pgcode.
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def _constraint(error: BaseException) -> str | None:
    # asyncpg puts it on the exception; psycopg 3 and psycopg2 under .diag.
    name = getattr(error, "constraint_name", None)
    if name is None:
        name = getattr(getattr(error, "diag", None), "constraint_name", None)
    return name if isinstance(name, str) else None


def _unwrap(error: BaseException) -> BaseException:
    # SQLAlchemy wraps the DBAPI error in .orig.
    orig: Any = getattr(error, "orig", None)
    return orig if isinstance(orig, BaseException) else error


def _looks_like_connection_error(error: BaseException) -> bool:
    # psycopg and psycopg2 raise OperationalError without a SQLSTATE when the
    # server cannot be reached; asyncpg and the pools name the class so.
    name = type(error).__name__
    return name == "OperationalError" or "Connection" in name or name == "PoolTimeout"


def is_driver_error(error: BaseException) -> bool:
    """Whether ``error`` comes from a database driver (and so needs translating)."""
    if isinstance(error, PgQueueError):
        return False
    if isinstance(error, (OSError, EOFError)):  # refused connection, dropped socket
        return True
    return type(error).__module__.split(".")[0] in _DRIVER_PACKAGES


def translate(error: BaseException) -> PgQueueError:
    """Map a driver's exception to ours. The caller raises it ``from error``."""
    if isinstance(error, PgQueueError):
        return error
    inner = _unwrap(error)
    sqlstate = _sqlstate(inner)
    message = str(inner).strip() or type(inner).__name__
    if sqlstate == "23505" and _constraint(inner) == QUEUEING_LOCK_INDEX:
        return AlreadyEnqueued(
            "a job with this queueing lock is already waiting; the new one was not deferred "
            f"({message.splitlines()[0]})",
            sqlstate=sqlstate,
        )
    if sqlstate in ("26000", "42P05"):
        setting = PREPARE_SETTINGS.get(type(inner).__module__.split(".")[0], "")
        return PreparedStatementError(
            f"{type(inner).__name__}: {message.splitlines()[0]}. A transaction pooler (PgBouncer "
            "in transaction mode, Supavisor, RDS Proxy) between us and the server sends each "
            "transaction to any of its server connections, and a prepared statement lives on "
            f"one of them. {setting}{'.' if setting else ''}".rstrip(),
            sqlstate=sqlstate,
        )
    cls: type[ConnectorException] = ConnectorException
    if sqlstate is not None:
        cls = SQLSTATE_CLASSES.get(sqlstate) or SQLSTATE_CLASSES.get(
            sqlstate[:2], ConnectorException
        )
    elif isinstance(inner, (OSError, EOFError)) or _looks_like_connection_error(inner):
        cls = ConnectionFailed
    return cls(f"{type(inner).__name__}: {message}", sqlstate=sqlstate)
