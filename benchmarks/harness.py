"""Shared bench bed: a spawned Caddy under test, a fast upstream, route sets, and wrk as the load generator.

The upstream is a second Caddy answering with a `static_response` (a Python upstream would be the bottleneck and
hide what is measured). wrk sends SNI "127.0.0.1", so configs under test get a `fallback_sni`; the Host header
then picks the route, which is what routing cost depends on. Both sides of every ratio get the same treatment.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import re
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coretraffic import __version__
from coretraffic.caddy_admin import CaddyAdmin
from coretraffic.caddy_process import CaddyProcess
from coretraffic.demo import DemoCA, demo_route
from coretraffic.passwords import BcryptHasher
from coretraffic.render import HTTPS_SERVER, JSON, BaseConfig, RenderSettings, render, serialise
from coretraffic.validate import Route, validate_route_set


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hosts(count: int, prefix: str = "h") -> list[str]:
    return [f"{prefix}{i:05}.bench.test" for i in range(count)]


@dataclass(frozen=True)
class Load:
    rps: float
    requests: int
    failed: int  # non-2xx/3xx responses plus socket errors other than reconnects


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk (or `just bench`, which installs it)")
    return wrk


async def wrk(port: int, host: str, seconds: float, *, connections: int = 32, auth: str | None = None) -> Load:
    """Load https://127.0.0.1:port/ with Host `host` for `seconds`; wrk's own summary is parsed."""
    args = [require_wrk(), "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-H", f"Host: {host}"]
    if auth is not None:
        args += ["-H", f"Authorization: Basic {base64.b64encode(auth.encode()).decode()}"]
    process = await asyncio.create_subprocess_exec(
        *args, f"https://127.0.0.1:{port}/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = (await process.communicate())[0].decode()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read \d+, write (\d+), timeout (\d+)", out)
    if rps is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    failed = int(non2xx.group(1)) if non2xx else 0
    if errors:
        # Read errors are keep-alive connections closed by a reload, which wrk reopens; the others are failures.
        failed += sum(int(n) for n in errors.groups())
    return Load(float(rps.group(1)), int(total.group(1)), failed)


class Bed:
    """One Caddy, its upstream and a route-set factory; configs are rendered with the real renderer."""

    def __init__(self, caddy: CaddyProcess, admin: CaddyAdmin, upstream_port: int) -> None:
        self.caddy = caddy
        self.admin = admin
        self.https_port = free_port()
        self.upstream_port = upstream_port
        self.settings = RenderSettings(
            admin_listen=caddy.admin_address.listen,
            version=__version__,
            http_port=free_port(),
            https_port=self.https_port,
            listen_host="127.0.0.1",
        )
        self.hasher = BcryptHasher()
        self._ca = DemoCA()
        self._configs: dict[str, dict[str, Any]] = {}

    def configs(self, hosts: list[str]) -> list[dict[str, Any]]:
        """Wire configs for `hosts` (certificates made once per host and reused)."""
        for host in hosts:
            if host not in self._configs:
                self._configs[host] = demo_route(self._ca, host, self.upstream_port)
        return [self._configs[host] for host in hosts]

    def routes(self, configs: list[dict[str, Any]]) -> tuple[Route, ...]:
        validation = validate_route_set(configs, datetime.datetime.now(datetime.UTC))
        assert not validation.errors, validation.errors
        return validation.routes

    def render(self, routes: Sequence[Route], *, fallback_sni: str, flat: bool = False) -> JSON:
        """The real renderer's config; `flat` forces one route per host, the layout before host dispatch."""
        settings = replace(self.settings, flat_max=10**9) if flat else self.settings
        config = render(routes, settings, BaseConfig(), self.hasher)
        config["apps"]["http"]["servers"][HTTPS_SERVER]["tls_connection_policies"] = [{"fallback_sni": fallback_sni}]
        return config

    async def load(self, config: JSON) -> None:
        await self.admin.load(serialise(config))

    def caddy_rss_mb(self) -> float:
        status = Path(f"/proc/{self.caddy.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match is not None
        return int(match.group(1)) / 1024


async def start_upstream(state_dir: Path) -> tuple[CaddyProcess, int]:
    """A Caddy of its own answering 200 "ok": fast, and never reloaded with the config under test (an upstream
    inside the same Caddy would have its connections closed by every reload, which real upstreams do not)."""
    upstream = CaddyProcess(state_dir)
    await upstream.start()
    port = free_port()
    server = {
        "listen": [f"127.0.0.1:{port}"],
        "automatic_https": {"disable": True},
        "routes": [{"handle": [{"handler": "static_response", "body": "ok"}]}],
    }
    admin = CaddyAdmin(upstream.admin_address)
    try:
        config = {"admin": {"listen": upstream.admin_address.listen}, "apps": {"http": {"servers": {"up": server}}}}
        await admin.load(serialise(config))
    finally:
        await admin.aclose()
    return upstream, port


@asynccontextmanager
async def bed() -> AsyncIterator[Bed]:
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        upstream, upstream_port = await start_upstream(Path(tmp) / "upstream")
        caddy = CaddyProcess(Path(tmp) / "state")
        await caddy.start()
        admin = CaddyAdmin(caddy.admin_address)
        try:
            yield Bed(caddy, admin, upstream_port)
        finally:
            await admin.aclose()
            await caddy.stop()
            await upstream.stop()
