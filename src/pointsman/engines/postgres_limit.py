"""A ``limit`` that PostgreSQL plans for.

A query run with a ``limit`` is wrapped, ``select * from (<query>) as
pointsman_limited limit <limit + 1>``, so that the database plans for those
rows (a top-N sort instead of a full one, a scan that stops) and the one row
more tells whether the limit cut. The wrapped statement runs only where
the server parses both it and the query alone (a prepare, which runs
nothing): a statement the wrapper would break (a trailing semicolon,
``select ... into``, a data-modifying ``with``) or complete (unbalanced
parentheses) runs as written, and so does one with a mistake of its own,
which then reads in its own words. A failure while the wrapped statement
runs is never retried; its ``LINE n`` is given as in the query alone.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from psycopg import AsyncConnection, generators
from psycopg.pq import ExecStatus

from pointsman.engines.memo import Memo
from pointsman.engines.spec import ConnectionSpec

_PREFIX = "select * from (\n"
# The alias carries a token of this process's own, so that no query a user
# writes is ever taken for a wrapped one.
_SUFFIX = f"\n) as pointsman_limited_{secrets.token_hex(4)} limit "
_WRAPPED = re.compile(re.escape(_PREFIX) + r"(.*)" + re.escape(_SUFFIX) + r"\d+", re.S)
# Past this a limit plans nothing differently (and one more would overflow
# PostgreSQL's bigint).
LARGEST_WRAPPED_LIMIT = 2**62


def wrap(sql: str, limit: int) -> str:
    return f"{_PREFIX}{sql}{_SUFFIX}{limit + 1}"


def unwrap(sql: str) -> str | None:
    """The query inside a wrapped statement; None for any other."""
    found = _WRAPPED.fullmatch(sql)
    return None if found is None else found[1]


def wanted(spec: ConnectionSpec, limit: int | None, is_query: bool) -> bool:
    return (
        limit is not None
        and limit < LARGEST_WRAPPED_LIMIT
        and spec.dialect == "postgres"
        and is_query
    )


def decided(sql: str, decisions: Memo[bool]) -> str | None:
    """The statement to run for ``sql`` where no question to the server is
    needed: ``sql`` itself unless wrapped, else as ``decisions`` (what the
    server said of each query before) has it; None if the server must be
    asked (:func:`choose`)."""
    if not sql.startswith(_PREFIX):
        return sql
    query = unwrap(sql)
    if query is None:
        return sql
    wrappable = decisions.get(query)
    if wrappable is None:
        return None
    return sql if wrappable else query


async def choose(conn: AsyncConnection[Any], sql: str, decisions: Memo[bool]) -> str:
    """The statement to run on a psycopg session: ``sql``, or for a wrapped
    one, the query alone unless the server parses both (``decisions``: what
    the server said of each query before)."""
    known = decided(sql, decisions)
    if known is not None:
        return known
    query = unwrap(sql)
    assert query is not None, "decided() answers for any other statement"
    if not await _parses(conn, query):
        return query  # its own mistake (a table not there yet): not kept
    wrappable = await _parses(conn, sql)
    decisions.set(query, wrappable)
    return sql if wrappable else query


async def _parses(conn: AsyncConnection[Any], sql: str) -> bool:
    """Whether the server parses and checks ``sql`` as one statement (an
    unnamed prepare: nothing runs)."""
    pgconn = conn.pgconn
    pgconn.send_prepare(b"", sql.encode(conn.info.encoding))
    answers = await conn.wait(generators.execute(pgconn))
    return all(answer.status == ExecStatus.COMMAND_OK for answer in answers)


_LINE = re.compile(r"^LINE (\d+): ", re.M)


def as_in_the_query(message: str, wrapped: str) -> str:
    """A message about the ``wrapped`` statement with its ``LINE n`` counted
    in the query alone (one line less), the caret under the same character.
    Only a line that shows the wrapped statement's own line ``n`` is
    renumbered (not one about a function's inner query)."""
    statement = wrapped.split("\n")
    lines = message.split("\n")
    for index, line in enumerate(lines):
        found = _LINE.match(line)
        if found is None:
            continue
        number = int(found[1])
        shown = line[found.end() :].removeprefix("...").removesuffix("...")
        if not 2 <= number <= len(statement) or shown not in statement[number - 1]:
            continue
        label = f"LINE {number - 1}: "
        lines[index] = label + line[found.end() :]
        shift = found.end() - len(label)
        caret = index + 1
        if shift and caret < len(lines) and lines[caret].startswith(" " * shift):
            lines[caret] = lines[caret][shift:]
    return "\n".join(lines)
