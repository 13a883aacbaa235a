"""Test bed: a real Caddy (the bundled binary) on free loopback ports, real certificates, real upstreams.

Nothing here is mocked. Helpers wait on conditions with deadlines; none sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coretraffic import __version__
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.render import JSON, BaseConfig, RenderSettings, render
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route, Validation, validate_route_set
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll `condition` until true; return the seconds it took, fail the test after `timeout`."""
    started = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="session")
def ca() -> DemoCA:
    return DemoCA()


@pytest.fixture
def upstream() -> Iterator[DemoUpstream]:
    server = DemoUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def second_upstream() -> Iterator[DemoUpstream]:
    server = DemoUpstream().start()
    yield server
    server.stop()


@dataclass
class Ports:
    http: int
    https: int


@pytest.fixture
def ports() -> Ports:
    return Ports(http=free_port(), https=free_port())


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short path: unix socket paths are limited to 107 bytes and pytest's tmp_path can be longer."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ct-") as name:
        yield Path(name)


@pytest.fixture
def driver_flags(short_tmp: Path, ports: Ports) -> list[str]:
    """Flags for a `coretraffic run` child: private state, free loopback ports, the cheapest bcrypt cost."""
    return [
        "--state-dir", str(short_tmp / "state"),
        "--http-port", str(ports.http),
        "--https-port", str(ports.https),
        "--listen-host", "127.0.0.1",
        "--bcrypt-cost", "4",
    ]  # fmt: skip


@pytest.fixture
async def caddy(short_tmp: Path) -> AsyncIterator[CaddyProcess]:
    process = CaddyProcess(short_tmp / "state")
    await process.start()
    yield process
    await process.stop()


@pytest.fixture
async def admin(caddy: CaddyProcess) -> AsyncIterator[CaddyAdmin]:
    client = CaddyAdmin(caddy.admin_address)
    yield client
    await client.aclose()


@pytest.fixture
def render_settings(caddy: CaddyProcess, ports: Ports) -> RenderSettings:
    return RenderSettings(
        version=__version__,
        http_port=ports.http,
        https_port=ports.https,
        listen_host="127.0.0.1",
    )


@pytest.fixture
def renderer(render_settings: RenderSettings) -> Callable[[Sequence[Route]], JSON]:
    hasher = BcryptHasher(cost=4)  # the cheapest cost: tests check behaviour, not hash strength

    def render_routes(routes: Sequence[Route]) -> JSON:
        return render(routes, render_settings, BaseConfig(), hasher)

    return render_routes


@pytest.fixture
async def reconciler(admin: CaddyAdmin, renderer: Callable[[Sequence[Route]], JSON]) -> AsyncIterator[Reconciler]:
    instance = Reconciler(admin, renderer)
    task = asyncio.create_task(instance.run())
    yield instance
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def validated(configs: list[dict[str, Any]]) -> Validation:
    return validate_route_set(configs, now())


def route_configs(ca: DemoCA, hosts: list[str], upstream_port: int) -> list[dict[str, Any]]:
    return [demo_route(ca, host, upstream_port) for host in hosts]


# -- the data plane, as a client sees it ---------------------------------------------------------------------


def objects_by_id(document: Any) -> dict[str, dict[str, Any]]:
    """Every object carrying an `@id` anywhere in a Caddy config, by that id (as the admin API's /id/ finds it)."""
    found: dict[str, dict[str, Any]] = {}
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("@id"), str):
                found[item["@id"]] = item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def ids_in(document: Any, prefix: str) -> set[str]:
    """Every `@id` starting with `prefix` anywhere in a Caddy config, the prefix removed."""
    return {ident.removeprefix(prefix) for ident in objects_by_id(document) if ident.startswith(prefix)}


async def https_get(
    ca: DemoCA | str,
    port: int,
    host: str,
    path: str = "/",
    *,
    auth: tuple[str, str] | None = None,
    host_header: str = "",
) -> httpx.Response:
    """A real HTTPS request to 127.0.0.1:`port` with SNI `host`, verified against the demo CA (object or PEM)."""
    trusted = ssl.create_default_context(cadata=ca if isinstance(ca, str) else ca.certificate_pem)
    async with httpx.AsyncClient(verify=trusted, timeout=10) as client:
        return await client.get(
            f"https://127.0.0.1:{port}{path}",
            headers={"Host": host_header or host},
            extensions={"sni_hostname": host},
            auth=auth,
        )


def served_certificate(port: int, sni: str) -> bytes:
    """The DER certificate Caddy presents for `sni` (no verification: we compare it ourselves)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


async def serves(ca: DemoCA, port: int, host: str) -> bool:
    try:
        return (await https_get(ca, port, host)).status_code == 200
    except (httpx.TransportError, ssl.SSLError):
        return False
