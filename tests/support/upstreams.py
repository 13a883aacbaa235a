"""Upstreams that fail on purpose, on a loopback address (127.0.0.1 unless told): refused, frozen (accepts, never
answers), closing after reading the request, slow, or answering; each counts what it received, so a test can tell
whether a request was sent twice."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from tests.support.ports import free_port


@dataclass
class Upstream:
    """An HTTP/1.1 upstream whose `behaviour` is `ok` (200 naming its port, after `delay` seconds), `freeze` or
    `close_after_read`."""

    behaviour: str = "ok"
    delay: float = 0.0
    address: str = "127.0.0.1"
    listen_port: int = 0  # 0: any free port
    received: list[tuple[str, bytes]] = field(default_factory=list)  # (method, body) of every request read
    _server: asyncio.Server | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, self.address, self.listen_port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._connections:  # a frozen connection would hold wait_closed for ever
                writer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            for _ in range(10_000):  # keep-alive: one request after another on the connection
                if self.behaviour == "freeze":
                    await reader.read()  # accept, never answer: until the peer gives up
                    return
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method = head.split(" ", 1)[0]
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in head.split("\r\n")
                        if line.lower().startswith("content-length:")
                    ),
                    0,
                )
                self.received.append((method, await reader.readexactly(length)))
                if self.behaviour == "close_after_read":
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)  # a slow application, not synchronisation
                body = str(self.port).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()


def refused_port() -> int:
    """A loopback port nothing listens on: a dial there is refused."""
    return free_port()
