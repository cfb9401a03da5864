"""A pool holding connections of two kinds (PostgreSQL's psycopg and ADBC
sessions) under one size: each request gets a connection of the kind it
names, a connection of the other kind is swapped when there is no room, and
a returned connection goes to a waiter of its own kind first, but never
passes anyone over for long."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field

import pytest

from pointsman.engines.pool import MAX_PASSED_OVER, ConnectionBudget, Pool

pytestmark = pytest.mark.anyio

_numbers = itertools.count(1)


@dataclass(eq=False)
class Conn:
    kind: Hashable
    number: int = field(default_factory=lambda: next(_numbers))
    closed: bool = False


def make_pool(size: int, cap: int | None = None) -> Pool[Conn]:
    async def connect(kind: Hashable) -> Conn:
        await asyncio.sleep(0)
        return Conn(kind)

    async def disconnect(conn: Conn) -> None:
        conn.closed = True

    return Pool(
        size=size,
        max_size=size,
        budget=ConnectionBudget(cap),
        connect=connect,
        disconnect=disconnect,
        alive=lambda conn: not conn.closed,
        max_idle_seconds=60,
        max_lifetime_seconds=600,
    )


async def test_each_request_gets_the_kind_it_names_while_there_is_room() -> None:
    pool = make_pool(size=2)

    plain = await pool.acquire(None)
    arrow = await pool.acquire(None, "adbc")
    pool.release(plain)
    pool.release(arrow)
    again = await pool.acquire(None, "adbc")

    assert (plain.kind, arrow.kind) == (None, "adbc")
    assert again is arrow
    assert pool.stats()["connectionsOpened"] == 2


async def test_an_idle_connection_of_the_other_kind_is_swapped_when_full() -> None:
    pool = make_pool(size=1)
    plain = await pool.acquire(None)
    pool.release(plain)

    arrow = await pool.acquire(None, "adbc")
    await pool.wait_closing()

    assert arrow.kind == "adbc" and plain.closed
    stats = pool.stats()
    assert (stats["size"], stats["connectionsOpened"], stats["connectionsClosed"]) == (
        1,
        2,
        1,
    )


async def test_a_handed_over_connection_of_the_other_kind_is_swapped() -> None:
    pool = make_pool(size=1)
    plain = await pool.acquire(None)
    waiting = asyncio.ensure_future(pool.acquire(None, "adbc"))
    await asyncio.sleep(0.01)

    pool.release(plain)
    arrow = await waiting
    await pool.wait_closing()

    assert arrow.kind == "adbc" and plain.closed
    assert pool.stats()["size"] == 1


async def test_a_swap_stays_within_the_server_wide_cap() -> None:
    pool = make_pool(size=2, cap=2)
    held = [await pool.acquire(None), await pool.acquire(None)]
    for conn in held:
        pool.release(conn)

    arrows = [await pool.acquire(None, "adbc"), await pool.acquire(None, "adbc")]

    assert [conn.kind for conn in arrows] == ["adbc", "adbc"]
    assert pool._budget.open_connections <= 2
    await pool.wait_closing()
    assert pool._budget.open_connections == 2


async def test_a_returned_connection_goes_to_a_waiter_of_its_kind_first() -> None:
    pool = make_pool(size=1)
    plain = await pool.acquire(None)
    first = asyncio.ensure_future(pool.acquire(None, "adbc"))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(pool.acquire(None))
    await asyncio.sleep(0.01)

    pool.release(plain)
    got = await second

    assert got is plain  # no swap: the waiter behind wanted this kind
    assert not first.done()
    pool.release(got)
    assert (await first).kind == "adbc"


async def test_a_waiter_is_passed_over_a_bounded_number_of_times() -> None:
    pool = make_pool(size=1)
    plain = await pool.acquire(None)
    arrow_waiter = asyncio.ensure_future(pool.acquire(None, "adbc"))
    await asyncio.sleep(0.01)

    served = 0
    conn = plain
    while not arrow_waiter.done():
        behind = asyncio.ensure_future(pool.acquire(None))
        await asyncio.sleep(0.01)
        pool.release(conn)
        await asyncio.sleep(0.01)
        if behind.done():
            served += 1
            conn = behind.result()
        else:
            break

    assert served == MAX_PASSED_OVER
    arrow = await arrow_waiter
    assert arrow.kind == "adbc"
    pool.release(arrow)
    await behind  # the plain waiter left behind is served next
