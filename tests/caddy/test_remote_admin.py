"""Remote admin through the admin gate (deploy/admin-gate.json as written, its paths and port moved to loopback):
only the driver's certificate gets in, and no load can lock the driver out.

Real parts only: the data-plane Caddy (fixture), the gate as its own `caddy run`, real mutual TLS with
certificates from a throwaway operator CA, the driver's real reconciler and admin client, real HTTPS clients.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from coretraffic.caddy.admin import AdminAddress, CaddyAdmin
from coretraffic.caddy.admin_tls import mutual_tls_context, transport_for
from coretraffic.caddy.process import CaddyProcess, find_caddy_binary
from coretraffic.caddyjson.layout import JSON
from coretraffic.cli.diff import run_diff
from coretraffic.core.validate import Route
from coretraffic.errors import CaddyRejected, CaddyUnavailable, LoadInDoubt
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.settings import Settings
from coretraffic.testing.admin_gate import MutualTLSFiles, gate_config, running_gate, write_mutual_tls
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support import paths
from tests.support.caddy import running, validated
from tests.support.dataplane import serves
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until

GATE_NAME = "localhost"  # the name in the gate's certificate, and the host of the https admin address


@dataclasses.dataclass(frozen=True)
class Gate:
    port: int
    files: MutualTLSFiles
    settings: Settings  # the driver's, as `coretraffic run --caddy-admin https://...` reads them

    @property
    def url(self) -> str:
        return f"https://{GATE_NAME}:{self.port}"


@pytest.fixture
def operator_ca() -> DemoCA:
    return DemoCA("operator admin CA")


@pytest.fixture
def gate(short_tmp: Path, caddy: CaddyProcess, operator_ca: DemoCA) -> Iterator[Gate]:
    files = write_mutual_tls(short_tmp / "admin-tls", operator_ca, GATE_NAME)
    port = free_port()
    template = json.loads((paths.REPO / "deploy" / "admin-gate.json").read_text())
    config = gate_config(template, port=port, admin_socket=caddy.admin_address.listen, files=files)
    settings = Settings.model_validate(
        {
            "caddy_admin": f"https://{GATE_NAME}:{port}",
            "admin_client_cert": files.driver_cert,
            "admin_client_key": files.driver_key,
            "admin_ca": files.ca,
            "remote_admin_listen": caddy.admin_address.listen,
        }
    )
    with running_gate(find_caddy_binary(), config, port, short_tmp / "gate.json"):
        yield Gate(port, files, settings)


@pytest.fixture
async def remote_admin(gate: Gate) -> AsyncIterator[CaddyAdmin]:
    address = AdminAddress(gate.url, own_listen=gate.settings.remote_admin_listen)
    client = CaddyAdmin(address, transport_for(address, gate.settings))
    yield client
    await client.aclose()


@pytest.fixture
async def remote_reconciler(
    remote_admin: CaddyAdmin, renderer: Callable[[Sequence[Route]], JSON]
) -> AsyncIterator[Reconciler]:
    async with running(Reconciler(remote_admin, renderer)) as instance:
        yield instance


def client_context(gate: Gate, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    """A client that trusts the gate (so only its own certificate, or none, is in question)."""
    context = ssl.create_default_context(cafile=str(gate.files.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


async def config_status(gate: Gate, context: ssl.SSLContext) -> int:
    """The status of `GET /config/` through the gate, or 0 when the TLS handshake or connection fails."""
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        try:
            return (await client.get(f"{gate.url}/config/")).status_code
        except (httpx.TransportError, ssl.SSLError):  # TLS 1.3: a refused certificate is an alert on the first read
            return 0


def write_pair(directory: Path, name: str, ca: DemoCA, **issue: str) -> tuple[Path, Path]:
    issued = ca.issue([name], **issue)  # type: ignore[arg-type]
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_text(issued.certificate_pem)
    key.write_text(issued.private_key_pem)
    return cert, key


async def test_the_driver_loads_a_set_through_the_gate_and_it_serves(
    remote_reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports, admin: CaddyAdmin
) -> None:
    result = await remote_reconciler.submit(validated([demo_route(ca, "remote.example.test", upstream.port)]))
    assert result.ok, result
    assert await serves(ca, ports.https, "remote.example.test")
    # The load kept the Caddy's own socket, the one the gate dials (and the way back).
    assert (await admin.get_config())["admin"]["listen"] == admin.address.listen


async def test_diff_reads_the_running_config_through_the_gate(
    remote_reconciler: Reconciler,
    gate: Gate,
    ca: DemoCA,
    upstream: DemoUpstream,
    ports: Ports,
    short_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`coretraffic diff --caddy-admin https://...`: the applied set diffs as unchanged (exit 0), which it would not
    if the desired config named the gate's address instead of the Caddy's own socket."""
    configs = [demo_route(ca, "diffed.example.test", upstream.port)]
    assert (await remote_reconciler.submit(validated(configs))).ok
    routes = short_tmp / "routes.json"
    routes.write_text(json.dumps(configs))
    data_plane = {"http_port": ports.http, "https_port": ports.https, "listen_host": "127.0.0.1", "routes": routes}
    capsys.readouterr()
    assert await run_diff(gate.settings.model_copy(update=data_plane), full=False, as_json=False) == 0
    assert "diffed.example.test" not in capsys.readouterr().out


async def test_only_the_drivers_certificate_gets_through(
    gate: Gate, short_tmp: Path, operator_ca: DemoCA, ca: DemoCA
) -> None:
    assert await config_status(gate, mutual_tls_context(gate.settings)) == 200, "the driver itself gets in"
    assert await config_status(gate, client_context(gate, None)) == 0, "no client certificate"
    other_ca = write_pair(short_tmp, "other-ca-client", ca, usage="client")
    assert await config_status(gate, client_context(gate, other_ca)) == 0, "a client certificate of another CA"
    # A server-only certificate of the operator's CA, as every gate holds one: it cannot drive another gate.
    servers_own = (gate.files.directory / "tls.crt", gate.files.directory / "tls.key")
    assert await config_status(gate, client_context(gate, servers_own)) == 0, "the gate's own certificate"


async def test_the_host_header_must_name_what_the_sni_named(gate: Gate) -> None:
    """Client authentication turns on Caddy's strict SNI-Host check: a client dialling an instance by address under
    its service's name sends the name as SNI and Host both."""
    async with httpx.AsyncClient(verify=mutual_tls_context(gate.settings), timeout=10) as client:
        response = await client.get(f"{gate.url}/config/", headers={"Host": f"127.0.0.1:{gate.port}"})
    assert response.status_code == 421


async def test_a_gate_dialled_by_address_is_verified_and_asked_under_its_service_name(gate: Gate) -> None:
    """As discovery dials each instance: by IP address, under the one name every gate's certificate carries."""
    by_address = AdminAddress(f"https://127.0.0.1:{gate.port}", own_listen=gate.settings.remote_admin_listen)
    named = CaddyAdmin(by_address, transport_for(by_address, gate.settings, server_name=GATE_NAME))
    unnamed = CaddyAdmin(by_address, transport_for(by_address, gate.settings))
    try:
        await named.ping()
        # Without a name, no SNI is sent for an address and Caddy has no certificate to answer with.
        with pytest.raises(CaddyUnavailable, match="ALERT_INTERNAL_ERROR"):
            await unnamed.ping()
    finally:
        await named.aclose()
        await unnamed.aclose()


async def test_a_gate_the_driver_cannot_verify_is_not_spoken_to(gate: Gate, short_tmp: Path, ca: DemoCA) -> None:
    """The driver trusts only --admin-ca: the same gate checked against another CA refuses the handshake."""
    (short_tmp / "other-ca.crt").write_text(ca.certificate_pem)
    elsewhere = gate.settings.model_copy(update={"admin_ca": short_tmp / "other-ca.crt"})
    assert await config_status(gate, mutual_tls_context(elsewhere)) == 0


async def test_a_driver_the_gate_refuses_finds_caddy_unavailable(gate: Gate, short_tmp: Path, ca: DemoCA) -> None:
    cert, key = write_pair(short_tmp, "stranger", ca, usage="client")
    stranger = gate.settings.model_copy(update={"admin_client_cert": cert, "admin_client_key": key})
    address = AdminAddress(gate.url, own_listen=gate.settings.remote_admin_listen)
    admin = CaddyAdmin(address, transport_for(address, stranger))
    try:
        with pytest.raises(CaddyUnavailable, match=f"{gate.url} unreachable"):
            await admin.ping()
    finally:
        await admin.aclose()


async def test_bad_and_rejected_sets_do_not_lock_the_driver_out(
    remote_reconciler: Reconciler, remote_admin: CaddyAdmin, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    assert (await remote_reconciler.submit(validated([demo_route(ca, "first.example.test", upstream.port)]))).ok

    # A bad set: its broken host is refused by validation, the rest is loaded through the gate.
    broken = {**demo_route(ca, "broken.example.test", upstream.port), "privateKey": "not a key"}
    bad = validated([broken, demo_route(ca, "kept.example.test", upstream.port)])
    assert [p.host for p in bad.errors] == ["broken.example.test"]
    assert (await remote_reconciler.submit(bad)).outcome == "applied"
    assert await serves(ca, ports.https, "kept.example.test")

    # A rejected set: what validation does not catch, Caddy refuses (HTTP 400), straight through the gate...
    with pytest.raises(CaddyRejected):
        await remote_admin.load(b'{"admin": {"listen": "%s"}, "apps": {"http": {"servers": {"x": {"listen": [1]}}}}}'
                                % remote_admin.address.config_listen.encode())  # fmt: skip
    # ... and one Caddy refuses while starting it (a port another process holds).
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        with pytest.raises(CaddyRejected, match="address already in use"):
            await remote_admin.load(_on_port(await remote_admin.get_config(), occupied.getsockname()[1]))

    # The way in is still there: the next good set loads and serves; the last good one served meanwhile.
    assert await serves(ca, ports.https, "kept.example.test")
    assert (await remote_reconciler.submit(validated([demo_route(ca, "last.example.test", upstream.port)]))).ok
    assert await serves(ca, ports.https, "last.example.test")


def _on_port(config: JSON, port: int) -> bytes:
    config["apps"]["http"]["servers"]["coretraffic_http"]["listen"] = [f"127.0.0.1:{port}"]
    return json.dumps(config).encode()


async def test_a_caddy_restarted_empty_is_reachable_through_the_gate_at_once(
    remote_reconciler: Reconciler, caddy: CaddyProcess, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    assert (await remote_reconciler.submit(validated([demo_route(ca, "again.example.test", upstream.port)]))).ok
    await caddy.stop()
    (caddy.state_dir / "config" / "caddy" / "autosave.json").unlink(missing_ok=True)
    await caddy.start()
    result = await remote_reconciler.submit(validated([demo_route(ca, "again.example.test", upstream.port)]))
    assert result.ok
    await wait_until(lambda: serves(ca, ports.https, "again.example.test"), 10, "the set served again")


async def test_a_load_the_gate_could_not_pass_on_is_in_doubt(
    remote_admin: CaddyAdmin, caddy: CaddyProcess, admin: CaddyAdmin
) -> None:
    """The gate answers 502 whether its connection to Caddy failed before the load reached Caddy or after: the
    driver then asks Caddy for the marker instead of taking the load as not sent (here Caddy is down: before)."""
    await caddy.stop()
    with pytest.raises(LoadInDoubt, match="HTTP 502"):
        await remote_admin.load(b"{}")
    with pytest.raises(CaddyUnavailable) as plain:
        await remote_admin.ping()
    assert not isinstance(plain.value, LoadInDoubt), "only a load is in doubt"
