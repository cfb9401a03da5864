"""Messages leaving engines/ carry no secret, DSN or host."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from pointsman.engines import ConnectionSpec
from pointsman.engines.failures import connect_reason, scrub, timed_out

SPEC = ConnectionSpec(
    id="c1",
    name="prod",
    dialect="postgres",
    host="db.internal",
    secrets={"password": "s3cr3t/pw"},
)


def test_scrub_removes_the_password_plain_and_url_encoded() -> None:
    text = scrub("failed with s3cr3t/pw and s3cr3t%2Fpw", SPEC)

    assert "s3cr3t" not in text


def test_scrub_removes_urls_with_credentials() -> None:
    text = scrub("cannot reach postgresql://bob:hunter2@db:5432/app now", SPEC)

    assert text == "cannot reach <dsn> now"


def test_scrub_removes_key_value_passwords() -> None:
    text = scrub("conninfo host=db password='x y' user=bob", SPEC)

    assert text == "conninfo host=db password=*** user=bob"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(111, "refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "unknown host"),
        (TimeoutError(), "no answer before the connect timeout"),
        (
            Exception('FATAL: password authentication failed for user "bob"'),
            "authentication failed",
        ),
        (
            Exception('FATAL: database "x" does not exist'),
            "the database does not exist",
        ),
        (
            Exception("something new at db.internal:5432"),
            "the connection attempt failed",
        ),
    ],
)
def test_connect_reason_is_short_and_names_no_host(
    error: BaseException, reason: str
) -> None:
    assert connect_reason(error, SPEC) == reason


def test_connect_reason_looks_through_the_exception_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("Can't connect to server on 'db.internal'") from inner
    except RuntimeError as outer:
        assert connect_reason(outer, SPEC) == "connection refused"


def test_timeout_message_names_the_connection_and_the_limit() -> None:
    assert timed_out(SPEC).detail == (
        "Query exceeded the 900s timeout of connection 'prod' and was cancelled"
    )


def test_a_short_password_is_removed_where_it_stands_alone_only() -> None:
    spec = dataclasses.replace(SPEC, secrets={"password": "abcd"})

    text = scrub("no column abcdef or a_abcd_b near 'abcd' and abcd", spec)

    assert text == "no column abcdef or a_abcd_b near '***' and ***"


def test_a_tiny_password_is_removed_only_where_spelled_as_a_password() -> None:
    spec = dataclasses.replace(SPEC, secrets={"password": "1"})

    text = scrub("LINE 1: select 1 from t, password=1 and pg://u:1@h/d", spec)

    assert text == "LINE 1: select 1 from t, password=*** and <dsn>"


def test_urls_without_credentials_and_quoted_values_stay_readable() -> None:
    text = scrub("invalid input: \"http://example.com/x\" 'password=hunter2'", SPEC)

    assert text == "invalid input: \"http://example.com/x\" 'password=***'"


def test_a_long_password_is_removed_even_inside_a_word() -> None:
    spec = dataclasses.replace(SPEC, secrets={"password": "hunter2hunter"})

    assert scrub("abchunter2hunterdef", spec) == "abc***def"
