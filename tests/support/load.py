"""A load client that accounts for every request: `connections` workers sending HTTPS GETs to one host until
stopped, retrying only the keep-alive race a client may retry on its own, recording every other failure.

Nothing sleeps to synchronise; the short pause after a failed request paces a measurement during an outage.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from coretraffic.testing.pki import DemoCA
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Failure:
    started: float  # time.monotonic() when the request was first sent
    what: str
    # A transport error on a connection opened for this very request (or for its retry): the listener dropped a
    # new connection, as opposed to an HTTP error answer or an error on a reused keep-alive connection.
    fresh: bool


@dataclass
class LoadFigures:
    sent: int = 0  # requests; one retried after a keep-alive race counts once
    ok: int = 0
    retried: int = 0  # keep-alive races: closed before any response byte on a reused connection, sent again once
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def failed_fresh(self) -> int:
        return sum(f.fresh for f in self.failures)

    def failed_since(self, moment: float) -> list[Failure]:
        return [f for f in self.failures if f.started >= moment]

    def summary(self) -> str:
        kinds = collections.Counter(f.what for f in self.failures).most_common(4)
        return (
            f"sent {self.sent}, ok {self.ok}, failed {self.failed} ({self.failed_fresh} on new connections), "
            f"retried {self.retried}; failures: {kinds}"
        )


def opened_connection(events: Sequence[str]) -> bool:
    """Whether httpcore opened a connection for this request (its trace has `connect_tcp`) or reused one."""
    return "connection.connect_tcp.started" in events


def keep_alive_race(exc: httpx.TransportError, events: Sequence[str]) -> bool:
    """True for the one failure a client may retry on its own: an idempotent request on a reused keep-alive
    connection that the server closed (a reload closes idle ones) before a single byte of response came back.

    httpcore's trace tells both facts: a reused connection has no `connect_tcp` event, and no response head
    was read without `receive_response_headers.complete`.
    """
    answered = "http11.receive_response_headers.complete" in events
    closed = isinstance(exc, httpx.ReadError | httpx.WriteError) or (
        isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)
    )
    return not opened_connection(events) and not answered and closed


class LoadClient:
    """`connections` workers sending GETs to one host over HTTPS keep-alive connections until stopped.

    httpx does not retry an HTTP/1.1 request that loses the keep-alive race, so it is done here: once, on a new
    connection (as browsers and Go's client do), and counted apart. Any other failure (an error, a non-200) is
    recorded with the time its request started and whether it hit a connection opened for it.
    """

    def __init__(self, ca: DemoCA, port: int, host: str, connections: int = 8) -> None:
        self.host = host
        self.figures = LoadFigures()
        self._url = f"https://127.0.0.1:{port}/"
        self._connections = connections
        self._verify = ssl.create_default_context(cadata=ca.certificate_pem)
        self._client = self._new_client(connections)
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def _new_client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(verify=self._verify, timeout=10, limits=limits)

    async def __aenter__(self) -> LoadClient:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._connections)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)
        await self._client.aclose()

    async def answered(self, count: int, timeout: float = 30) -> None:
        """Until `count` more requests have succeeded than so far."""
        target = self.figures.ok + count

        async def reached() -> bool:
            return self.figures.ok >= target

        await wait_until(reached, timeout, f"{count} more successful requests ({self.figures.summary()})")

    async def _work(self) -> None:
        while not self._stop.is_set():
            if not await self._request():
                # Caddy is down: connection refused comes back at once; pace the measurement instead of spinning.
                await asyncio.sleep(0.02)

    async def _request(self) -> bool:
        started = time.monotonic()
        self.figures.sent += 1
        failure = await self._attempt(self._client, started)
        if failure is None:
            return True
        if failure is not _RETRY:
            self.figures.failures.append(failure)
            return False
        self.figures.retried += 1
        async with self._new_client(1) as once:
            failure = await self._attempt(once, started)
        if failure is None:
            return True
        self.figures.failures.append(Failure(started, f"retry: {failure.what}", failure.fresh))
        return False

    async def _attempt(self, client: httpx.AsyncClient, started: float) -> Failure | None:
        """None when answered 200; `_RETRY` for a lost keep-alive race; else what went wrong."""
        events: list[str] = []

        async def trace(name: str, info: dict[str, Any]) -> None:
            events.append(name)

        try:
            response = await client.get(
                self._url, headers={"Host": self.host}, extensions={"sni_hostname": self.host, "trace": trace}
            )
        except httpx.TransportError as exc:
            if keep_alive_race(exc, events):
                return _RETRY
            return Failure(started, f"{type(exc).__name__}: {exc}", opened_connection(events))
        if response.status_code == 200:
            self.figures.ok += 1
            return None
        return Failure(started, f"HTTP {response.status_code}", False)


_RETRY = Failure(0.0, "lost the keep-alive race", False)
