"""Connectors with a path of their own, each in a module that imports its driver on first use.

* :mod:`pgqueue_ref.contrib.sqlalchemy` — ``SQLAlchemyPsycopg2Connector``, which
  defers through an SQLAlchemy engine (its own, or the application's).
* :mod:`pgqueue_ref.contrib.aiopg` — ``AiopgConnector`` (procrastinate 3.10's path).
* :mod:`pgqueue_ref.contrib.psycopg2` — ``Psycopg2Connector`` (procrastinate 3.10's path).
"""
