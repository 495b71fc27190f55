"""Connectors for frameworks, each in a module of its own that imports its framework.

* :mod:`pgqueue_ref.contrib.sqlalchemy` — ``SQLAlchemyPsycopg2Connector``, which
  defers through an SQLAlchemy engine (its own, or the application's).
"""
