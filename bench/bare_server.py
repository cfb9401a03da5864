"""The bare baseline: a Starlette endpoint that looks a pool up in a dict and
runs the SQL. No auth, no routing, no log; JSON rows out.

    python bench/bare_server.py PORT DB [DB ...]

``POST /run`` with ``{"db": NAME, "sql": SQL}`` answers a JSON array of row
objects. Served the way ``pointsman serve`` serves (``uvicorn.run(app,
host=..., port=..., log_level="info")`` after ``logging.basicConfig`` at INFO,
so uvloop, httptools and uvicorn's access log alike), on the same driver and
pool settings as pointsman's PostgreSQL engine.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from common import make_pool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app(databases: list[str]) -> Starlette:
    pools: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name in databases:
            pools[name] = make_pool(name)
            await pools[name].open()
        try:
            yield
        finally:
            for pool in pools.values():
                await pool.close()

    async def run(request: Request) -> Response:
        body = orjson.loads(await request.body())
        pool = pools[body["db"]]
        async with pool.connection() as conn:
            cursor = await conn.execute(body["sql"])
            names = [column.name for column in cursor.description or ()]
            rows = await cursor.fetchall()
        data = [dict(zip(names, row, strict=True)) for row in rows]
        return Response(orjson.dumps(data), media_type="application/json")

    return Starlette(routes=[Route("/run", run, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    logging.basicConfig(
        level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    port, names = int(sys.argv[1]), sys.argv[2:]
    uvicorn.run(create_app(names), host="127.0.0.1", port=port, log_level="info")
