"""A local TCP proxy in front of a database server, which a test can cut off.

``cut("refuse")`` is a server that went down: open links are reset and new
connects are refused. ``cut("hang")`` is a host that stopped answering: open
links and new connects stay open, and nothing passes any more.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Outage = Literal["refuse", "hang"]
CHUNK_BYTES = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._outage: Outage | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self, outage: Outage) -> None:
        """Stop serving, the way a dead (refuse) or silent (hang) host does."""
        self._outage = outage
        if outage == "refuse":
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        if self._outage is not None:
            return  # accepted and left silent (hang); refuse closed the listener
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(upstream_writer)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(CHUNK_BYTES):
                if self._outage == "hang":
                    return  # swallow everything from now on
                sink.write(data)
                await sink.drain()
        if self._outage is None:
            sink.transport.abort()
