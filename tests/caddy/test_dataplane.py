"""What clients see through a real Caddy driven by coretraffic: TLS per SNI, redirects, auth, proxying."""

from __future__ import annotations

import hashlib
import ssl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from coretraffic import __version__
from coretraffic.caddy.process import CaddyProcess
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import validated
from tests.support.dataplane import https_get, served_certificate
from tests.support.ports import Ports


def der_of(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


async def test_each_sni_gets_its_own_certificate_and_is_proxied(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    configs = [demo_route(ca, host, upstream.port) for host in ("a.example.test", "b.example.test")]
    result = await reconciler.submit(validated(configs))
    assert result.ok, result.summary()

    for config in configs:
        host = str(config["hostName"])
        served = served_certificate(ports.https, host)
        assert hashlib.sha256(served).digest() == hashlib.sha256(der_of(str(config["publicKey"]))).digest()
        response = await https_get(ca, ports.https, host, "/some/path?q=1")
        assert response.status_code == 200
        assert response.json() == {"upstream": upstream.port, "host": host, "path": "/some/path?q=1"}
        assert response.headers["servezone_coretraffic_version"] == __version__


async def test_requests_are_spread_over_every_upstream(
    ca: DemoCA, upstream: DemoUpstream, second_upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    config = demo_route(ca, "spread.example.test", upstream.port)
    config["destinationPorts"] = [upstream.port, second_upstream.port]
    assert (await reconciler.submit(validated([config]))).ok
    seen = set()
    for _ in range(40):  # Caddy picks at random: all 40 on one upstream has odds of 2 in 10^12
        seen.add((await https_get(ca, ports.https, "spread.example.test")).json()["upstream"])
    assert seen == {upstream.port, second_upstream.port}


async def test_basic_auth(ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports) -> None:
    config = demo_route(ca, "private.example.test", upstream.port)
    config["authentication"] = {"type": "Basic", "user": "alice", "pass": "s3cret pass"}
    assert (await reconciler.submit(validated([config]))).ok
    host = "private.example.test"
    assert (await https_get(ca, ports.https, host)).status_code == 401
    assert (await https_get(ca, ports.https, host, auth=("alice", "wrong"))).status_code == 401
    assert (await https_get(ca, ports.https, host, auth=("bob", "s3cret pass"))).status_code == 401
    response = await https_get(ca, ports.https, host, auth=("alice", "s3cret pass"))
    assert response.status_code == 200
    assert response.headers["servezone_coretraffic_version"] == __version__


async def test_http_redirects_to_https_with_host_and_uri(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "a.example.test", upstream.port)]))).ok
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{ports.http}/deep/path?x=1&y=2", headers={"Host": "a.example.test"}
        )
    assert response.status_code == 301
    assert response.headers["location"] == "https://a.example.test/deep/path?x=1&y=2"


async def test_unknown_host_on_known_sni_gets_421(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    """Strict SNI host matching, which per-host metrics (the default) bring: answered before any route. Without
    it (`--traffic-metrics server|off`) the catch-all route answers 404 (tests/caddy/test_traffic_metrics.py)."""
    assert (await reconciler.submit(validated([demo_route(ca, "a.example.test", upstream.port)]))).ok
    response = await https_get(ca, ports.https, "a.example.test", host_header="elsewhere.example.test")
    assert response.status_code == 421


async def test_unknown_sni_fails_the_handshake(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "a.example.test", upstream.port)]))).ok
    with pytest.raises(ssl.SSLError):
        served_certificate(ports.https, "unknown.example.test")


async def test_wildcard_host(ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports) -> None:
    config = demo_route(ca, "*.apps.example.test", upstream.port)
    assert (await reconciler.submit(validated([config]))).ok
    response = await https_get(ca, ports.https, "one.apps.example.test")
    assert response.status_code == 200


async def test_no_acme_and_no_automatic_https(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, caddy: CaddyProcess, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "a.example.test", upstream.port)]))).ok
    assert (await https_get(ca, ports.https, "a.example.test")).status_code == 200
    log = "\n".join(caddy.recent_log).lower()
    for server in ("coretraffic_http", "coretraffic_https"):
        assert f'automatic https is completely disabled for server","server_name":"{server}"' in log
    for sign in ("acme", "obtain", "issuer", "enabling automatic", "redirect"):
        assert sign not in log, f"Caddy log mentions {sign!r}"


async def test_oversized_headers_are_refused_before_they_reach_the_auth_cache(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    config = demo_route(ca, "guarded.example.test", upstream.port)
    config["authentication"] = {"type": "Basic", "user": "alice", "pass": "s3cret"}
    assert (await reconciler.submit(validated([config]))).ok
    response = await https_get(ca, ports.https, "guarded.example.test", auth=("alice", "x" * 40_000))
    assert response.status_code == 431
