"""Fixtures every folder uses: a real Caddy (the bundled binary) on free loopback ports, real certificates, real
upstreams, a running reconciler, and the Coreflow test peer. Thin wrappers: the helpers live in tests/support.

Nothing here is mocked. Helpers wait on conditions with deadlines; none sleeps to synchronise.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from coretraffic import __version__
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import RenderSettings
from coretraffic.caddyjson.traffic import TrafficSettings
from coretraffic.core.validate import Route
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import renderer_for, running
from tests.support.coreflow import Peer
from tests.support.ports import Ports, free_port


@pytest.fixture(autouse=True, scope="session")
def _no_caddy_metrics_listener_unless_asked() -> Iterator[None]:
    """Every driver a test starts would give its Caddy a metrics listener on 127.0.0.1:9181 (the default): one
    test's Caddy still stopping would fail the next one's load. Tests of the listener pass a free port."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORETRAFFIC_CADDY_METRICS_LISTEN", "")
        yield


@pytest.fixture(autouse=True, scope="session")
def _state_home_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Drivers and commands started without `--state-dir` keep their state (checked certificates, the served
    hosts the removal guard starts from) under `$XDG_STATE_HOME`: a directory of this session, so that no run of
    the suite finds what another run, or the machine's own driver, left in `~/.local/state`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))
        yield


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoCA]:
    """The demo CA most tests issue from. The machine trusts it, as a cluster's machines trust their private CA:
    the drivers and commands the tests start (which inherit `SSL_CERT_FILE`) find its leaves' chains reaching a
    root, so their output holds only the warnings a test causes (`core.trust`; the tests of that warning set
    their own `SSL_CERT_FILE`)."""
    demo = DemoCA()
    bundle = tmp_path_factory.mktemp("trust") / "roots.pem"
    system = ssl.get_default_verify_paths().cafile
    bundle.write_text((Path(system).read_text() if system else "") + demo.certificate_pem)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSL_CERT_FILE", str(bundle))
        yield demo


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
    """As `coretraffic run` renders under the tests' environment: per-host metrics (the default, with strict SNI
    host matching) and no metrics listener (`_no_caddy_metrics_listener_unless_asked`)."""
    return RenderSettings(
        version=__version__,
        http_port=ports.http,
        https_port=ports.https,
        listen_host="127.0.0.1",
        traffic=TrafficSettings(metrics="per_host"),
    )


@pytest.fixture
def renderer(render_settings: RenderSettings) -> Callable[[Sequence[Route]], JSON]:
    return renderer_for(render_settings)


@pytest.fixture
async def reconciler(admin: CaddyAdmin, renderer: Callable[[Sequence[Route]], JSON]) -> AsyncIterator[Reconciler]:
    async with running(Reconciler(admin, renderer)) as instance:
        yield instance


# -- Coreflow: the real TypedSocket peer ------------------------------------------------------------------------


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    started = await Peer.start()
    yield started
    await started.close()


@pytest.fixture
async def peers() -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    """Starts peers on demand (e.g. again on the same port) and cleans all of them up."""
    started: list[Peer] = []

    async def start(port: int = 0, *options: str) -> Peer:
        peer = await Peer.start(port, *options)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        await peer.close()
