"""The named-query loader and the one parameter-style conversion."""

from __future__ import annotations

import pytest

from pgqueue_ref.sql import QUERIES, SCHEMA, parse_queries, to_numbered


def test_to_numbered_numbers_names_in_order_of_first_use() -> None:
    sql, names = to_numbered("SELECT %(b)s::int, %(a)s::int, %(b)s::int")
    assert sql == "SELECT $1::int, $2::int, $1::int"
    assert names == ("b", "a")


def test_to_numbered_unescapes_percent() -> None:
    assert to_numbered("SELECT 'a%%b', %(x)s") == ("SELECT 'a%b', $1", ("x",))


def test_to_numbered_without_parameters() -> None:
    assert to_numbered("SELECT 1") == ("SELECT 1", ())


def test_parse_queries_keeps_doc_comments_out_of_the_sql() -> None:
    queries = parse_queries(
        "preamble\n-- name: one\n-- why it is so\nSELECT 1;\n\n-- name: two\nSELECT 2\n"
    )
    assert queries["one"].sql == "SELECT 1"
    assert queries["one"].doc == "why it is so"
    assert queries["two"].sql == "SELECT 2"


def test_parse_queries_refuses_a_name_twice() -> None:
    with pytest.raises(ValueError, match="'one' is defined twice"):
        parse_queries("-- name: one\nSELECT 1\n-- name: one\nSELECT 2\n")


def test_every_query_has_a_doc_or_is_self_evident_and_converts() -> None:
    assert {"defer_jobs", "fetch_jobs", "finish_jobs", "requeue_stalled_jobs"} <= set(QUERIES)
    for query in QUERIES.values():
        numbered, names = to_numbered(query.sql)
        assert "%(" not in numbered, query.name
        assert len(names) == len(set(names))


def test_schema_has_no_percent_sign() -> None:
    # Drivers with a parameter style would read '%' as a placeholder (this is
    # what broke procrastinate's SQLAlchemy connector on its own schema).
    assert "%" not in SCHEMA


def test_fetch_uses_skip_locked() -> None:
    assert "FOR UPDATE SKIP LOCKED" in QUERIES["fetch_jobs"].sql
