"""Turn driver failures into pointsman's engine errors, scrubbed of secrets.

Every message that leaves ``engines/`` goes through :func:`scrub`: a driver
may quote a conninfo string or a URL back at us, and neither may reach a
client or a log line.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from urllib.parse import quote

from pointsman.engines.spec import ConnectionSpec
from pointsman.errors import (
    ConnectionBusyError,
    DatabaseUnavailableError,
    QueryFailedError,
    QueryQueueFullError,
    QueryTimeoutError,
)

REDACTED = "***"

# A URL that carries credentials (``scheme://user:password@host``).
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/@'\"<>]*@[^\s'\"<>]+")
_KEY_VALUE_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token)(\s*[=:]\s*)"
    r"('[^']*'|\"[^\"]*\"|[^\s'\",;]+)"
)

# Ordered: the first phrase found in the driver's message names the reason.
_REASON_PHRASES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("password authentication failed", "access denied", "authentication failed"),
        "authentication failed",
    ),
    (("no pg_hba.conf entry",), "the server does not accept this client"),
    (('role "',), "authentication failed"),
    (("does not exist", "unknown database"), "the database does not exist"),
    (
        ("too many connections", "too many clients", "remaining connection slots"),
        "the server has too many connections",
    ),
    (
        (
            "could not translate host name",
            "name or service not known",
            "nodename nor servname",
            "unknown mysql server host",
            "temporary failure in name resolution",
        ),
        "unknown host",
    ),
    (("connection refused",), "connection refused"),
    (("timeout expired", "timed out"), "no answer before the connect timeout"),
    (("ssl",), "SSL negotiation failed"),
    (
        ("the database system is starting up", "the database system is shutting down"),
        "the server is starting up or shutting down",
    ),
    (
        ("server closed the connection", "lost connection", "has gone away"),
        "the server closed the connection",
    ),
)


# A secret shorter than this is removed where it stands alone, not inside
# a longer word: a password "abcd" must not turn "abcdef" into "***ef".
SHORT_SECRET = 8
# A secret shorter than this cannot be told from ordinary text ("1" in
# "LINE 1"): it is removed only where it is spelled as a password
# (``password=...``, a URL's credentials). Such passwords are weak anyway.
TINY_SECRET = 4


def scrub(text: str, spec: ConnectionSpec) -> str:
    """Remove the spec's secrets, any URL and any ``password=...`` from text."""
    for secret in spec.secrets.values():
        if secret:
            for spelling in {secret, quote(secret, safe="")}:
                text = without_secret(text, spelling)
    text = _URL.sub("<dsn>", text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)


def without_secret(text: str, secret: str) -> str:
    if len(secret) >= SHORT_SECRET:
        return text.replace(secret, REDACTED)
    if len(secret) < TINY_SECRET:
        return text
    alone = rf"(?<!\w){re.escape(secret)}(?!\w)"
    return re.sub(alone, REDACTED, text)


def connect_reason(exc: BaseException, spec: ConnectionSpec) -> str:
    """A short reason for a failed connect, without host, password or DSN."""
    for link in _chain(exc):
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return "unknown host"
        if isinstance(link, TimeoutError):
            return "no answer before the connect timeout"
    message = " ".join(str(link) for link in _chain(exc)).lower()
    for phrases, reason in _REASON_PHRASES:
        if any(phrase in message for phrase in phrases):
            return reason
    return "the connection attempt failed"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def unavailable(spec: ConnectionSpec, reason: str) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        f"Could not connect to connection {spec.name!r}: {scrub(reason, spec)}"
    )


def connect_failed(
    spec: ConnectionSpec, exc: BaseException
) -> DatabaseUnavailableError:
    return unavailable(spec, connect_reason(exc, spec))


def connection_lost(
    spec: ConnectionSpec, exc: BaseException
) -> DatabaseUnavailableError:
    """The server went away while a query ran on an open session."""
    return DatabaseUnavailableError(
        f"Lost the connection to connection {spec.name!r} while the query ran:"
        f" {lost_reason(exc)}"
    )


_LOST_PHRASES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("due to administrator command",), "the server ended the session"),
    (
        ("shutting down", "terminating connection", "server shutdown"),
        "the server is shutting down",
    ),
    (("connection reset", "broken pipe"), "the connection was reset"),
    (
        ("server closed the connection", "lost connection", "has gone away"),
        "the server closed the connection",
    ),
)


def lost_reason(exc: BaseException) -> str:
    """A short reason for a session that broke, without anything secret."""
    message = " ".join(str(link) for link in _chain(exc)).lower()
    for phrases, reason in _LOST_PHRASES:
        if any(phrase in message for phrase in phrases):
            return reason
    return "the connection broke"


def query_failed(spec: ConnectionSpec, message: str) -> QueryFailedError:
    return QueryFailedError(scrub(message.strip(), spec) or "The query failed")


def timed_out(spec: ConnectionSpec) -> QueryTimeoutError:
    seconds = spec.query_timeout_seconds
    return QueryTimeoutError(
        f"Query exceeded the {seconds}s timeout of connection {spec.name!r}"
        " and was cancelled"
    )


def queue_full(
    spec: ConnectionSpec, running: int, queued: int, retry_after_seconds: int
) -> QueryQueueFullError:
    return QueryQueueFullError(
        f"Connection {spec.name!r} is running {running} queries with {queued}"
        " more waiting: try again later",
        retry_after_seconds=retry_after_seconds,
    )


def busy(
    spec: ConnectionSpec, seconds: float, retry_after_seconds: int
) -> ConnectionBusyError:
    return ConnectionBusyError(
        f"Connection {spec.name!r} is busy: no database connection came free"
        f" within {seconds:g}s",
        retry_after_seconds=retry_after_seconds,
    )


def over_cap(
    spec: ConnectionSpec, cap: int, retry_after_seconds: int
) -> ConnectionBusyError:
    return ConnectionBusyError(
        f"Connection {spec.name!r} is busy: this server already holds its limit"
        f" of {cap} open database connections",
        retry_after_seconds=retry_after_seconds,
    )


def closed(spec: ConnectionSpec) -> ConnectionBusyError:
    return ConnectionBusyError(
        f"The pool of connection {spec.name!r} was closed while the query waited"
    )


ONE_STATEMENT_ONLY = "Only one SQL statement per query is allowed"


def one_statement_only(spec: ConnectionSpec) -> QueryFailedError:
    """A query string held several statements: none of them ran."""
    return QueryFailedError(
        f"{ONE_STATEMENT_ONLY} on connection {spec.name!r}: send the statements"
        " one at a time"
    )


def not_allowed(spec: ConnectionSpec, what: str) -> QueryFailedError:
    """A statement pointsman refuses to run, whatever the database allows."""
    return QueryFailedError(f"{what} is not allowed on connection {spec.name!r}")
