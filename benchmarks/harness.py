"""Shared bench bed: a spawned Caddy under test, a fast upstream, route sets, and h2load as the load generator.

The upstream is a second Caddy answering with a `static_response` (a Python upstream would be the bottleneck and
hide what is measured). h2load (Debian's nghttp2-client) connects to loopback while sending the host's name as
SNI and Host, so every request takes the path a real client's would. Both sides of every ratio get the same
treatment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import re
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from benchmarks import material
from coretraffic import __version__
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import RenderSettings, render, serialise, with_admin_listen
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route, validate_route_set
from coretraffic.testing.pki import DemoCA, KeyType, demo_route, route_config

K = TypeVar("K", bound=Hashable)

# Batches of new hosts from this size on take their certificates from `material` (issued once, kept on disk).
ISSUED_ON_DISK_FROM = 1000


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports nothing listens on now: bound all at once, since a port released by one
    bind can be the next bind's (CI once got the same port twice for the upstream's three listeners)."""
    with contextlib.ExitStack() as sockets:
        bound = [sockets.enter_context(socket.socket()) for _ in range(count)]
        for sock in bound:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in bound]


def hosts(count: int, prefix: str = "h") -> list[str]:
    return [f"{prefix}{i:05}.bench.test" for i in range(count)]


@dataclass(frozen=True)
class Load:
    rps: float
    requests: int
    failed: int  # requests that ended without a 2xx response
    hung: int = 0  # runs killed because a connection never got its answer (h2load waits for it for ever)


# h2load ends a run only when every request it sent was answered: one connection that never is would hold the
# run (and the suite) for ever. Past its duration plus this, the run is killed and counted as hung.
HUNG_AFTER_S = 20.0


def require_h2load() -> str:
    h2load = shutil.which("h2load")
    if h2load is None:
        raise SystemExit("h2load is needed: apt-get install -y nghttp2-client (or `just bench`, which installs it)")
    return h2load


async def h2load(port: int, host: str, seconds: float, *, clients: int = 32, auth: str | None = None) -> Load:
    """Load https://`host`/ over HTTP/1.1 keep-alive for `seconds`, connecting to 127.0.0.1:`port`.

    The TLS handshake carries `host` as SNI, as a browser's would (wrk cannot do that with a loopback target, and
    a handshake without SNI takes Caddy's slow fallback path through every certificate it holds).
    """
    args = [require_h2load(), "--h1", f"-c{clients}", "-t2", f"-D{max(1, round(seconds))}"]
    args.append(f"--connect-to=127.0.0.1:{port}")
    if auth is not None:
        args += ["-H", f"Authorization: Basic {base64.b64encode(auth.encode()).decode()}"]
    process = await asyncio.create_subprocess_exec(
        *args, f"https://{host}:{port}/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out = (await asyncio.wait_for(process.communicate(), seconds + HUNG_AFTER_S))[0].decode()
    except TimeoutError:
        process.kill()
        await process.wait()
        return Load(0.0, 0, 0, hung=1)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if rps is None or done is None or codes is None:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    return Load(float(rps.group(1)), int(done.group(1)), int(done.group(1)) - int(codes.group(1)))


async def until_serving(client: httpx.AsyncClient, port: int, host: str, deadline_s: float = 60) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        try:
            response = await client.get(
                f"https://127.0.0.1:{port}/", headers={"Host": host}, extensions={"sni_hostname": host}
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{host} did not answer within {deadline_s} s")


def as_received(configs: list[dict[str, Any]]) -> Any:
    """Fresh objects, as a Coreflow message parses into: nothing shared with earlier sets."""
    return json.loads(json.dumps(configs))


class Bed:
    """One Caddy, its upstream and a route-set factory; configs are rendered with the real renderer."""

    def __init__(self, caddy: CaddyProcess, admin: CaddyAdmin, upstream_ports: list[int]) -> None:
        self.caddy = caddy
        self.admin = admin
        self.https_port = free_port()
        self.upstream_port = upstream_ports[0]
        self.upstream_ports = upstream_ports  # the same upstream on each: for hosts with several upstreams
        self.settings = RenderSettings(
            version=__version__,
            http_port=free_port(),
            https_port=self.https_port,
            listen_host="127.0.0.1",
        )
        self.hasher = BcryptHasher()
        self._ca = DemoCA()
        self._configs: dict[tuple[str, KeyType], dict[str, Any]] = {}

    @property
    def ca(self) -> DemoCA:
        """The CA that issued every host's certificate: what a client of this bed trusts."""
        return self._ca

    def configs(
        self, hosts: list[str], upstream_port: int | None = None, *, key_type: KeyType = "ec"
    ) -> list[dict[str, Any]]:
        """Wire configs for `hosts` proxying to `upstream_port` (the bed's upstream by default); certificates are
        made once per host and reused, large batches kept on disk."""
        port = self.upstream_port if upstream_port is None else upstream_port
        missing = [host for host in hosts if (host, key_type) not in self._configs]
        if len(missing) >= ISSUED_ON_DISK_FROM:
            for host, certificate in zip(missing, material.issued(missing, key_type), strict=True):
                self._configs[host, key_type] = route_config(host, certificate, self.upstream_port)
        for host in missing:
            if (host, key_type) not in self._configs:
                self._configs[host, key_type] = demo_route(self._ca, host, self.upstream_port, key_type=key_type)
        return [{**self._configs[host, key_type], "destinationPorts": [port]} for host in hosts]

    def routes(self, configs: list[dict[str, Any]]) -> tuple[Route, ...]:
        validation = validate_route_set(configs, datetime.datetime.now(datetime.UTC))
        assert not validation.errors, validation.errors
        return validation.routes

    def render(self, routes: Sequence[Route], *, flat: bool = False, stream_close_delay: str | None = None) -> JSON:
        """The real renderer's config as loaded into this Caddy; `flat` forces one route per host, the layout
        before host dispatch; `stream_close_delay` replaces the default's."""
        settings = replace(self.settings, flat_max=10**9) if flat else self.settings
        if stream_close_delay is not None:
            settings = replace(settings, stream_close_delay=stream_close_delay)
        return with_admin_listen(render(routes, settings, BaseConfig(), self.hasher), self.caddy.admin_address.listen)

    async def load(self, config: JSON) -> None:
        await self.admin.load(serialise(config))

    async def timed_loads(self, bodies: Mapping[K, bytes], rounds: int = 1) -> dict[K, list[float]]:
        """`POST /load` of each body in turn, `rounds` times over: per body, the seconds until Caddy answered.
        Alternated, so that the machine's load drifting during the run weighs on every body alike."""
        timings: dict[K, list[float]] = {key: [] for key in bodies}
        for _ in range(rounds):
            for key, body in bodies.items():
                started = time.perf_counter()
                await self.admin.load(body)
                timings[key].append(time.perf_counter() - started)
        return timings

    def caddy_rss_mb(self) -> float:
        assert self.caddy.pid is not None, "Caddy is not running"
        return rss_mb(self.caddy.pid)


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid`, in MB."""
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match is not None
    return int(match.group(1)) / 1024


async def start_upstream(state_dir: Path, listeners: int = 3) -> tuple[CaddyProcess, list[int]]:
    """A Caddy of its own answering 200 "ok" on `listeners` ports: fast, and never reloaded with the config under
    test (an upstream inside the same Caddy would have its connections closed by every reload, which real upstreams
    do not)."""
    upstream = CaddyProcess(state_dir)
    await upstream.start()
    ports = free_ports(listeners)
    server = {
        "listen": [f"127.0.0.1:{port}" for port in ports],
        "automatic_https": {"disable": True},
        "routes": [{"handle": [{"handler": "static_response", "body": "ok"}]}],
    }
    admin = CaddyAdmin(upstream.admin_address)
    try:
        config = {"admin": {"listen": upstream.admin_address.listen}, "apps": {"http": {"servers": {"up": server}}}}
        await admin.load(serialise(config))
    finally:
        await admin.aclose()
    return upstream, ports


@asynccontextmanager
async def bed() -> AsyncIterator[Bed]:
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        upstream, upstream_ports = await start_upstream(Path(tmp) / "upstream")
        caddy = CaddyProcess(Path(tmp) / "state")
        await caddy.start()
        admin = CaddyAdmin(caddy.admin_address)
        try:
            yield Bed(caddy, admin, upstream_ports)
        finally:
            await admin.aclose()
            await caddy.stop()
            await upstream.stop()
