"""Route changes and live connections: what a reload costs the traffic going through Caddy.

- WebSockets opened through Caddy to an echo upstream, kept open across reloads of a large set: how many still
  echo afterwards, and Caddy's RSS (old configs stay in memory while their streams live) against its steady state.
- Clients that open a new connection for every request, during reloads: every failure counted by its kind.
"""

from __future__ import annotations

import asyncio
import collections
import http
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from benchmarks.harness import Bed, free_port, h2load, hosts
from benchmarks.scale import traffic_until
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import serialise
from coretraffic.observe.listener_handover import read_tcp_migrate_req

BARE_HOST = "bare.bench.test"


def bare_config(
    admin_listen: str,
    port: int,
    generation: int,
    *,
    pair: dict[str, str] | None,
    app: dict[str, Any],
    listen: str | None = None,
) -> JSON:
    """Caddy's defaults but for the port (or `listen`, e.g. `fd/5`), and TLS with `pair`, a `load_pem` entry."""
    server: JSON = {
        "listen": [listen or f"127.0.0.1:{port}"],
        "routes": [{"@id": f"generation_{generation % 2}", "handle": [{"handler": "static_response", "body": "ok"}]}],
        "automatic_https": {"disable": True},
    }
    apps: JSON = {"http": {**app, "servers": {"bare": server}}}
    if pair is not None:
        server["tls_connection_policies"] = [{}]
        apps["tls"] = {"certificates": {"load_pem": [pair]}}
    return {"admin": {"listen": admin_listen}, "apps": apps}


ECHO_TIMEOUT_S = 5.0
SETTLE_S = 10.0  # twice the upstream idle timeout, as in `scale.reloads_under_traffic`
WARM_UP_S = 5


async def _echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


def _plain_ok(connection: ServerConnection, request: Request) -> Response | None:
    """A request that is no WebSocket upgrade gets a plain 200, so the same upstream serves HTTP clients too."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    return Response(http.HTTPStatus.OK, "OK", Headers([("Content-Length", "2")]), b"ok")


@asynccontextmanager
async def echo_upstream() -> AsyncIterator[int]:
    """A WebSocket echo server on 127.0.0.1 (any free port, yielded); plain GETs get 200 "ok"."""
    async with serve(_echo, "127.0.0.1", 0, process_request=_plain_ok) as server:
        yield next(iter(server.sockets)).getsockname()[1]


def client_tls(bed: Bed) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=bed.ca.certificate_pem)


async def open_websocket(bed: Bed, host: str, tls: ssl.SSLContext) -> ClientConnection:
    """`wss://host/` through the bed's Caddy: TCP to 127.0.0.1, `host` as SNI and Host, as a browser would."""
    return await connect(
        f"wss://{host}:{bed.https_port}/", ssl=tls, host="127.0.0.1", port=bed.https_port, proxy=None, open_timeout=10
    )


async def echoes(socket: ClientConnection, text: str) -> bool:
    """Whether `socket` is open and sends `text` back."""
    try:
        await socket.send(text)
        return await asyncio.wait_for(socket.recv(), ECHO_TIMEOUT_S) == text
    except (ConnectionClosed, TimeoutError):
        return False


@dataclass(frozen=True)
class Streams:
    opened: int
    alive: int  # still echoing after the reloads
    reloads: int
    steady_mb: float  # Caddy with the set loaded and the streams open, before any reload
    settled_mb: float

    @property
    def ratio(self) -> float:
        return self.settled_mb / self.steady_mb


async def websockets_across_reloads(
    bed: Bed, size: int, sockets: int, reloads: int, stream_close_delay: str | None = None, *, churn: bool = False
) -> Streams:
    """`sockets` WebSockets to one host of a `size`-host set stay open while `reloads` sets, each changing another
    host, are loaded under HTTP traffic to a second host (as `scale.reloads_under_traffic`, whose steady state
    this shares: the set loaded and warmed up by traffic); then each WebSocket must still echo.

    `churn`: the worst case for memory instead. One more WebSocket is opened under each config, so every old
    config keeps a stream and stays in memory until its delay ends."""
    tls = client_tls(bed)
    async with echo_upstream() as echo_port, AsyncExitStack() as stack:
        names = hosts(size, prefix="ws")
        configs = [*bed.configs(names[:1], echo_port), *bed.configs(names[1:])]

        def body(changed: int) -> bytes:
            varied = [*configs[:-1], *bed.configs([f"ws-r{changed:05}.bench.test"])]
            return serialise(bed.render(bed.routes(varied), stream_close_delay=stream_close_delay))

        await bed.admin.load(body(0))
        opened = [await open_websocket(bed, names[0], tls) for _ in range(sockets)]
        for socket in opened:
            stack.push_async_callback(socket.close)
        assert all([await echoes(s, "warm") for s in opened]), "a WebSocket did not echo before any reload"
        await h2load(bed.https_port, names[1], WARM_UP_S)
        steady = bed.caddy_rss_mb()
        stop = asyncio.Event()
        traffic = asyncio.create_task(traffic_until(bed, names[1], stop))
        for changed in range(1, reloads + 1):
            await bed.admin.load(body(changed))
            if churn:
                opened.append(await open_websocket(bed, names[0], tls))
                stack.push_async_callback(opened[-1].close)
        await asyncio.sleep(SETTLE_S)  # a measurement span (old configs' idle connections time out), not a sync
        settled = bed.caddy_rss_mb()
        stop.set()
        await traffic
        alive = sum(await asyncio.gather(*(echoes(s, "after") for s in opened)))
    return Streams(len(opened), alive, reloads, steady, settled)


def failure_kind(exc: Exception) -> str:
    """What a failed request ran into, short enough to count: the exception's type and the gist of its text."""
    text = str(exc) or repr(exc)
    if "ConnectionTerminated" in text:
        # A graceful HTTP/2 GOAWAY (RFC 9113 6.8). httpcore fails the request either way: with last_stream_id 0
        # (nothing processed: a client may resend it) its retry check reads 0 as "no id" and raises; a stream at
        # or below last_stream_id is one the server still answers, but httpcore gives up on it.
        if "last_stream_id:0," in text:
            return "GOAWAY before the first request (unprocessed)"
        return "GOAWAY after the request was accepted (httpcore gives up on it)"
    for gist in ("without sending a response", "reset by peer", "refused", "EOF", "timed out", "closed"):
        if gist.lower() in text.lower():
            return f"{type(exc).__name__}: {gist}"
    return f"{type(exc).__name__}: {text[:60]}"


class NewConnectionClients:
    """`workers` clients each sending GET `url` with `host` as Host (and SNI) on a new connection per request, as
    a stream of first-time visitors does, until stopped. Nothing is retried: every failure counts, by kind."""

    def __init__(
        self, url: str, host: str, *, workers: int, tls: ssl.SSLContext | None = None, http2: bool = False
    ) -> None:
        self.ok = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self._url, self._host = url, host
        self._tls: ssl.SSLContext | bool = tls or False
        self._http2 = http2
        self._stop = asyncio.Event()
        self._workers = [asyncio.create_task(self._work()) for _ in range(workers)]

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    async def answered(self, count: int, timeout: float = 30) -> None:
        """Until `count` more requests have been answered 200 than so far (the clients are really running)."""
        target = self.ok + count
        async with asyncio.timeout(timeout):
            while self.ok < target:
                await asyncio.sleep(0.01)  # polling a counter the workers advance, with a deadline

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)

    async def _work(self) -> None:
        headers = {"Host": self._host}
        while not self._stop.is_set():
            # A client of its own per request: HTTP/2 would otherwise share one connection among the workers.
            client = httpx.AsyncClient(
                verify=self._tls, http1=not self._http2, http2=self._http2, timeout=10, trust_env=False
            )
            try:
                async with client:
                    response = await client.get(self._url, headers=headers, extensions={"sni_hostname": self._host})
            except httpx.HTTPError as exc:
                self.failures[failure_kind(exc)] += 1
                continue
            if response.status_code == 200:
                self.ok += 1
            else:
                self.failures[f"HTTP {response.status_code}"] += 1


@dataclass(frozen=True)
class NewConnections:
    reloads: int
    ours_ok: int
    ours_failures: dict[str, int]
    bare_ok: int
    bare_failures: dict[str, int]
    tcp_migrate_req: str

    @staticmethod
    def per_100(failures: dict[str, int], reloads: int) -> float:
        return 100 * sum(failures.values()) / reloads


async def new_connections_across_reloads(
    bed: Bed, reloads: int, workers: int = 8, hosts_in_set: int = 50
) -> NewConnections:
    """Clients opening a new HTTPS connection per request while Caddy reloads: coretraffic's config (one host
    changed per reload) beside a bare Caddy's default config (one route, TLS) reloaded as often, same Caddy."""
    tls = client_tls(bed)
    names = hosts(hosts_in_set, prefix="nc")
    configs = bed.configs(names)
    ours = [
        serialise(bed.render(bed.routes([*configs[:-1], *bed.configs([f"nc-r{i % 2}.bench.test"])]))) for i in range(2)
    ]
    issued = bed.ca.issue([BARE_HOST])
    pair = {"certificate": issued.certificate_pem, "key": issued.private_key_pem}
    bare_port = free_port()
    bare = [serialise(bare_config(bed.caddy.admin_address.listen, bare_port, g, pair=pair, app={})) for g in range(2)]
    results = []
    for bodies, port, host in ((ours, bed.https_port, names[0]), (bare, bare_port, BARE_HOST)):
        await bed.admin.load(bodies[0])
        clients = NewConnectionClients(f"https://127.0.0.1:{port}/", host, workers=workers, tls=tls)
        try:
            await clients.answered(20)
            for generation in range(1, reloads + 1):
                await bed.admin.load(bodies[generation % 2])
                await clients.answered(2)  # traffic between two reloads, as between two deploys
        finally:
            await clients.stop()
        results.append((clients.ok, dict(clients.failures)))
    (ours_ok, ours_failures), (bare_ok, bare_failures) = results
    return NewConnections(reloads, ours_ok, ours_failures, bare_ok, bare_failures, read_tcp_migrate_req())
