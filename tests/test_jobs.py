"""Arguments, schedules and retry decisions: the parts that need no database."""

from __future__ import annotations

import datetime
import decimal

import pytest

from pgqueue_ref.exceptions import UnserializableArguments
from pgqueue_ref.jobs import dump_args, schedule_in_seconds
from pgqueue_ref.retry import RetryStrategy, retry_strategy


def test_dump_args_round_trips_plain_json() -> None:
    assert (
        dump_args("t", {"a": 1, "b": ["x", None, {"c": 1.5}]}) == '{"a":1,"b":["x",null,{"c":1.5}]}'
    )


def test_dump_args_names_the_argument_that_is_not_json() -> None:
    with pytest.raises(UnserializableArguments) as caught:
        dump_args("send_invoice", {"ok": 1, "amount": decimal.Decimal("1.10")})
    assert str(caught.value) == (
        "argument 'amount' of task 'send_invoice' is not JSON serialisable: a value of type Decimal "
        "(Object of type Decimal is not JSON serializable). Task arguments are stored as JSON; "
        "pass plain str, int, float, bool, None, list or dict values."
    )
    assert isinstance(caught.value, TypeError)


def test_dump_args_refuses_nan() -> None:
    with pytest.raises(UnserializableArguments, match=r"argument 'x' .*the float nan"):
        dump_args("t", {"x": float("nan")})


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("a\x00b", "a NUL character"),
        ({"nested": ["ok", "\x00"]}, "a NUL character"),
        ({"key\x00": 1}, "a NUL character"),  # a key is text too
        ("x\ud800", "a surrogate code point"),
        (["\udfff"], "a surrogate code point"),
    ],
)
def test_dump_args_refuses_text_postgresql_cannot_store(value: object, found: str) -> None:
    with pytest.raises(UnserializableArguments) as caught:
        dump_args("t", {"ok": "fine", "data": value})
    assert str(caught.value).startswith(f"argument 'data' of task 't' holds {found}")
    assert "which PostgreSQL cannot store in text or jsonb" in str(caught.value)


def test_dump_args_keeps_what_only_looks_like_those() -> None:
    # An emoji is escaped as a surrogate *pair*; a backslash-u text is just text.
    assert dump_args("t", {"e": "\U0001f600", "s": "\\u0000 \\ud800"}) == (
        '{"e":"\\ud83d\\ude00","s":"\\\\u0000 \\\\ud800"}'
    )


def test_schedule_in() -> None:
    assert schedule_in_seconds({"seconds": 30}) == 30
    assert schedule_in_seconds({"minutes": 1, "seconds": 1}) == 61
    assert schedule_in_seconds(datetime.timedelta(hours=1)) == 3600
    with pytest.raises(TypeError, match=r"schedule_in=\{\'secs\': 3\} is not valid"):
        schedule_in_seconds({"secs": 3})


def test_retry_int_means_retries_after_the_first_attempt() -> None:
    strategy = retry_strategy(3)
    assert strategy is not None
    error = RuntimeError()
    assert [strategy.retry_in(attempt, error) for attempt in (1, 2, 3, 4)] == [0, 0, 0, None]


def test_retry_waits_and_exception_filter() -> None:
    strategy = RetryStrategy(
        max_retries=None,
        wait=1,
        linear_wait=2,
        exponential_wait=3,
        retry_exceptions=(ConnectionError,),
    )
    assert strategy.retry_in(2, ConnectionError()) == 1 + 2 * 2 + 3**2
    assert strategy.retry_in(2, ValueError()) is None


@pytest.mark.parametrize("value", [False, None, 0])
def test_no_retry(value: object) -> None:
    assert retry_strategy(value) is None  # type: ignore[arg-type]


def test_retry_rejects_nonsense() -> None:
    with pytest.raises(TypeError, match="retry=-1"):
        retry_strategy(-1)
