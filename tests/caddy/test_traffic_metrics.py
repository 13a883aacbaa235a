"""Caddy's request metrics as coretraffic renders them, against a real Caddy: per-host labels bounded by the
loaded names (a client cannot mint a series with a Host of its choosing), the listener of their own that serves
nothing of the admin API, and what `server` mode leaves out. Caddy's behaviour is in docs/caddy.md, "Traffic
metrics" (modules/caddyhttp/metrics.go and server.go, `enforcementHandler`)."""

from __future__ import annotations

import httpx
import pytest

from coretraffic import __version__
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.render import RenderSettings, serialise, with_admin_listen
from coretraffic.caddyjson.traffic import TrafficSettings
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import renderer_for, validated
from tests.support.caddy_metrics import caddy_metrics_text, label_values, sample_value
from tests.support.dataplane import https_get
from tests.support.ports import Ports, free_port

HOSTS = ("a.example.test", "b.example.test")


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def render_settings(caddy: CaddyProcess, ports: Ports, metrics_port: int) -> RenderSettings:
    """This module's Caddy runs with per-host metrics on a listener of their own (the driver's default)."""
    traffic = TrafficSettings(metrics="per_host", metrics_listen=f"127.0.0.1:{metrics_port}")
    return RenderSettings(
        version=__version__, http_port=ports.http, https_port=ports.https, listen_host="127.0.0.1", traffic=traffic
    )


async def test_per_host_series_are_only_of_loaded_names_whatever_host_a_client_sends(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports, metrics_port: int
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, h, upstream.port) for h in HOSTS]))).ok
    for host in HOSTS:
        assert (await https_get(ca, ports.https, host)).status_code == 200
    # A valid SNI with a Host of the client's choosing: another loaded host, a name nobody loaded, a mixed case.
    minted = {"b.example.test": "a.example.test", "minted-1.example": "a.example.test", "x.evil": "b.example.test"}
    for host_header, sni in minted.items():
        response = await https_get(ca, ports.https, sni, host_header=host_header)
        assert response.status_code == 421, (sni, host_header, response.status_code)  # Misdirected Request
    assert (await https_get(ca, ports.https, "a.example.test", host_header="A.Example.TEST")).status_code == 200

    text = await caddy_metrics_text(metrics_port)
    assert label_values(text, "caddy_http_requests", "host") == set(HOSTS)
    assert sample_value(text, "caddy_http_requests_total", host="a.example.test") == 2  # the mixed case counted
    assert sample_value(text, "caddy_http_requests_total", host="b.example.test") == 1  # the 421s nowhere
    durations = label_values(text, "caddy_http_request_duration_seconds", "code")
    assert durations == {"200"}


async def test_a_host_with_another_port_reaches_no_route_and_creates_no_series(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports, metrics_port: int
) -> None:
    """Strict SNI host matching compares the name without the port, and Caddy labels the Host as sent: without
    the port guard on every route, `a.example.test:1234` (or `:01234`, the same port as a number) was a series of
    its own (measured). Now only no port, 443 or the HTTPS port reach a route; any other gets Caddy's empty 200."""
    host = HOSTS[0]
    assert (await reconciler.submit(validated([demo_route(ca, host, upstream.port)]))).ok
    for port in ("", ":443", f":{ports.https}"):
        response = await https_get(ca, ports.https, host, host_header=host + port)
        assert response.status_code == 200 and response.json()["upstream"] == upstream.port, port
    for port in (":1234", f":0{ports.https}", ":xyz", ":"):
        response = await https_get(ca, ports.https, host, host_header=host + port)
        assert (response.status_code, response.content) == (200, b""), port  # no route ran: nothing answered
        assert "servezone_coretraffic_version" not in response.headers
    text = await caddy_metrics_text(metrics_port)
    assert label_values(text, "caddy_http_requests", "host") == {host, f"{host}:443", f"{host}:{ports.https}"}
    assert sample_value(text, "caddy_http_requests_total") == 3


async def test_the_redirect_server_labels_loaded_names_and_pools_the_rest(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports, metrics_port: int
) -> None:
    """Plain HTTP carries no SNI to hold the Host to: there Caddy itself labels only the names of the config's host
    matchers and pools every other Host as `_other` (`shouldAllowHostMetrics`)."""
    assert (await reconciler.submit(validated([demo_route(ca, HOSTS[0], upstream.port)]))).ok
    async with httpx.AsyncClient(timeout=10) as client:
        for host in (HOSTS[0], "minted-1.example", "minted-2.example", f"{HOSTS[0]}:1234"):
            response = await client.get(f"http://127.0.0.1:{ports.http}/", headers={"Host": host})
            assert response.status_code == 301, host
    text = await caddy_metrics_text(metrics_port)
    assert sample_value(text, "caddy_http_requests_total", server="coretraffic_http", host=HOSTS[0]) == 1
    assert sample_value(text, "caddy_http_requests_total", server="coretraffic_http", host="_other") == 3
    assert label_values(text, "caddy_http_requests", "host") == {HOSTS[0], "_other"}


async def test_the_metrics_listener_serves_metrics_and_nothing_of_the_admin_api(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, metrics_port: int
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, HOSTS[0], upstream.port)]))).ok
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10) as client:
        assert "caddy_config_last_reload_successful" in (await client.get("/metrics")).text
        assert (await client.get("/config/")).status_code == 404
        assert (
            await client.post("/load", content=b"{}", headers={"Content-Type": "application/json"})
        ).status_code == 404
        assert (await client.get("/reverse_proxy/upstreams")).status_code == 404


async def test_server_mode_counts_without_a_host_label_and_without_strict_sni(
    ca: DemoCA, upstream: DemoUpstream, caddy: CaddyProcess, admin: CaddyAdmin, ports: Ports, metrics_port: int
) -> None:
    traffic = TrafficSettings(metrics="server", metrics_listen=f"127.0.0.1:{metrics_port}")
    settings = RenderSettings(
        version=__version__, http_port=ports.http, https_port=ports.https, listen_host="127.0.0.1", traffic=traffic
    )
    config = renderer_for(settings)(validated([demo_route(ca, HOSTS[0], upstream.port)]).routes)
    await admin.load(serialise(with_admin_listen(config, caddy.admin_address.listen)))
    assert (await https_get(ca, ports.https, HOSTS[0])).status_code == 200
    assert (await https_get(ca, ports.https, HOSTS[0], host_header="other.example")).status_code == 404
    text = await caddy_metrics_text(metrics_port)
    assert label_values(text, "caddy_http_requests", "host") == set()
    assert sample_value(text, "caddy_http_requests_total", server="coretraffic_https") == 2
