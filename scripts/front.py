"""One address in front of several nodes, as a deployment's load balancer would be.

Each TCP connection goes to the first node, in the order given, that accepts it: while
the first node lives every page talks to it; once it is dead its connections close, and
the pages' reconnects (their WebSocket, and what they fetch) reach the next one. This is
what a load balancer with health checks does for the cluster, kept small for the
benchmarks; the media do not pass through it (ICE goes to the addresses each node's
answer gives).
"""

from __future__ import annotations

import asyncio
import contextlib

# A node that does not accept within this is skipped.
CONNECT_TIMEOUT_S = 1.0


class Front:
    def __init__(self, host: str, port: int, backends: list[tuple[str, int]]) -> None:
        self.host = host
        self.port = port
        self.backends = backends
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in self.backends:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    up_reader, up_writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                continue
            pipes = [
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ]
            self._pipes.update(pipes)
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for task in pipes:
                task.cancel()
                self._pipes.discard(task)
            up_writer.close()
            break
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
