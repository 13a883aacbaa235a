"""A stand-in OCSP responder on 127.0.0.1 that counts its connections: whether Caddy fetches OCSP, for tests and
benchmarks.

It either holds every connection open without a word (a responder that never answers) or answers each request
with `404` and closes (a responder that fails fast), and can be switched from holding to answering, which also
answers the connections it holds. It keeps at most `MAX_HELD` connections; more are closed at once.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from coretraffic.testing.pki import PublicLikeCA

MAX_HELD = 1000
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Responder:
    def __init__(self, *, answer: bool) -> None:
        self.connections = 0
        self._answer = answer
        self._held: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def issuing_ca(self) -> PublicLikeCA:
        """A public-CA-shaped issuer whose leaves name this responder for OCSP and CA issuers (AIA)."""
        return PublicLikeCA(ocsp_url=f"{self.url}/ocsp", ca_issuers_url=f"{self.url}/issuer.der")

    async def __aenter__(self) -> Responder:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._held:
            writer.close()
        await self._server.wait_closed()

    def answer_from_now_on(self) -> None:
        """Answer `404` to the connections held and to every one after."""
        self._answer = True
        for writer in self._held:
            writer.write(_NOT_FOUND)
            writer.close()
        self._held.clear()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self._answer:
            if len(self._held) < MAX_HELD:
                self._held.append(writer)
            else:
                writer.close()
            return
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_NOT_FOUND)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
