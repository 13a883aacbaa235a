"""What an operator's Prometheus sees: a real Prometheus (Debian's package) scraping a real driver (fed by the
real Coreflow peer) and its Caddy on loopback, under traffic with 2xx answers, a 401, 5xx from a host whose
upstreams are dead and a certificate that expires in 10 days. Every dashboard query and every alert expression
of deploy/ runs through Prometheus's API and must say what that situation implies; a query naming a metric that
nobody exports fails. `promtool` checks the shipped rules and scrape configs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coretraffic.testing.pki import DemoCA, demo_route, route_config
from coretraffic.testing.upstream import DemoUpstream
from tests.support.coreflow import Peer, update
from tests.support.dataplane import https_get
from tests.support.driver import Driver, ready
from tests.support.ports import Ports, free_port
from tests.support.prometheus import (
    ALERTS,
    DEPLOY,
    Prometheus,
    alert_queries,
    binary,
    dashboard_queries,
    loopback_config,
    unexported,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

OK, SOON, AUTH, DEAD, IDLE, BROKEN, LATER = (
    f"{name}.example.test" for name in ("ok", "soon", "auth", "dead", "idle", "broken", "later")
)
TRAFFIC_HOSTS = {OK, SOON, AUTH, DEAD}


def route_set(ca: DemoCA, upstream: int, dead_ports: tuple[int, int]) -> list[dict[str, Any]]:
    """Six hosts: four get traffic (one answers 401 without credentials, one has only dead upstreams), one gets
    none, and one is rejected (its key is another host's)."""
    in_ten_days = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    auth = demo_route(ca, AUTH, upstream)
    auth["authentication"] = {"type": "Basic", "user": "alice", "pass": "not sent by the traffic"}
    dead = demo_route(ca, DEAD, dead_ports[0])
    dead["destinationPorts"] = list(dead_ports)
    broken = demo_route(ca, BROKEN, upstream)
    broken["privateKey"] = auth["privateKey"]
    return [
        demo_route(ca, OK, upstream),
        route_config(SOON, ca.issue([SOON], not_after=in_ten_days), upstream),
        auth,
        dead,
        demo_route(ca, IDLE, upstream),
        broken,
    ]


async def traffic(ca: DemoCA, port: int) -> None:
    """Requests to the four traffic hosts until cancelled: a few per second each, as one client would send."""
    while True:
        for host in sorted(TRAFFIC_HOSTS):
            with contextlib.suppress(httpx.TransportError):
                await https_get(ca, port, host)
        await asyncio.sleep(0.05)  # pacing the load, not synchronising: every check below waits on Prometheus


@contextlib.asynccontextmanager
async def running_traffic(ca: DemoCA, port: int) -> AsyncIterator[None]:
    task = asyncio.create_task(traffic(ca, port))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def hosts_of(result: list[dict[str, Any]]) -> set[str]:
    return {series["metric"].get("host", "") for series in result}


async def test_dashboard_and_alerts_say_what_the_traffic_implies(
    ca: DemoCA, upstream: DemoUpstream, ports: Ports, driver_flags: list[str], short_tmp: Path
) -> None:
    binary("prometheus")
    status_port, metrics_port = free_port(), free_port()
    dead_ports = (free_port(), free_port())  # nothing listens there: every dial is refused
    configs = route_set(ca, upstream.port, dead_ports)
    peer = await Peer.start()
    args = ["run", *driver_flags, "--status-addr", f"127.0.0.1:{status_port}"]
    args += ["--caddy-metrics-listen", f"127.0.0.1:{metrics_port}", "--traffic-metrics", "per_host"]
    driver = Driver(args, env={"CORETRAFFIC_COREFLOW_URL": peer.url})
    prometheus_dir = short_tmp / "prometheus"
    prometheus_dir.mkdir()
    prometheus = Prometheus(loopback_config(status_port, metrics_port), prometheus_dir)
    try:
        await peer.status(until_tagged=True, wait_s=30)
        reply = (await peer.call("updateRouting", update(configs)))["response"]
        assert reply["status"] == "error" and BROKEN in reply["errorText"], reply
        await wait_until(lambda: ready(status_port), 30, "the route set applied")
        await wait_until(prometheus.ready, 30, "prometheus ready")
        await wait_until(prometheus.targets_up, 30, "both targets scraped")
        async with running_traffic(ca, ports.https):
            # A second load while Prometheus watches (one more host), for the dashboard's config-load annotations.
            await peer.call("updateRouting", update([*configs, demo_route(ca, LATER, upstream.port)]))

            async def every_traffic_host_has_a_rate() -> bool:
                rates = await prometheus.query(dashboard[0].expr)
                return hosts_of([r for r in rates if float(r["value"][1]) > 0]) == TRAFFIC_HOSTS

            async def the_dead_host_is_alerted() -> bool:
                return bool(await prometheus.query(alerts["CoretrafficHostServerErrors"]))

            async def the_dead_upstreams_are_alerted() -> bool:  # failing again and again: 3 counted failures
                return bool(await prometheus.query(alerts["CoretrafficFailingUpstreams"]))

            async def both_loads_are_seen() -> bool:
                return len(await prometheus.query("coretraffic_caddy_loads_total >= 2")) == 1

            dashboard, alerts = dashboard_queries(), alert_queries()
            await wait_until(every_traffic_host_has_a_rate, 60, "a request rate for every host with traffic")
            await wait_until(the_dead_host_is_alerted, 60, "the 5xx ratio of the dead host")
            await wait_until(the_dead_upstreams_are_alerted, 60, "the dead upstreams' failures counted")
            await wait_until(both_loads_are_seen, 30, "the second load scraped")
            exported = await prometheus.metric_names()
            results = {q.where: await prometheus.query(q.expr) for q in dashboard}
            fired = {name: await prometheus.query(expr) for name, expr in alerts.items()}
        for query in dashboard:
            assert not unexported(query.expr, exported), f"{query.where}: {unexported(query.expr, exported)}"
            assert results[query.where], f"{query.where} is empty: {query.expr}"
        for name, expr in alerts.items():
            assert not unexported(expr, exported), f"alert {name}: {unexported(expr, exported)}"
    finally:
        await prometheus.stop()
        driver.stop()
        await peer.close()

    # The names check fails on a name nobody exports (a typo, a metric renamed on one side).
    assert unexported("rate(caddy_http_requests_totl[5m])", exported) == {"caddy_http_requests_totl"}

    # Traffic per host: rates for exactly the hosts that got requests; errors where they happened.
    assert hosts_of(results["panel 5xx per host A"]) == {DEAD}
    assert {(r["metric"]["host"], r["metric"]["code"]) for r in results["panel 4xx per host A"]} == {(AUTH, "401")}
    success = {r["metric"]["host"]: float(r["value"][1]) for r in results["panel Success rate per host (not 5xx) A"]}
    assert success[OK] == success[SOON] == success[AUTH] == 1.0 and success[DEAD] == 0.0
    assert hosts_of(results["panel Latency p50 / p95 / p99 per host C"]) == TRAFFIC_HOSTS
    assert hosts_of(results["panel Hosts with failing upstreams A"]) == {DEAD}
    # Certificates: one series per accepted host, the 10-day one first.
    days = {
        r["metric"]["host"]: float(r["value"][1]) for r in results["panel Certificate expiry per host (days left) A"]
    }
    assert set(days) == {OK, SOON, AUTH, DEAD, IDLE, LATER}
    assert 9.9 < days[SOON] < 10.0 and min(days, key=days.__getitem__) == SOON
    # Alerts: each fires for what is wrong and for nothing else.
    assert hosts_of(fired["CoretrafficHostServerErrors"]) == {DEAD}
    assert hosts_of(fired["CoretrafficCertificateExpiringSoon"]) == {SOON}
    failing = {r["metric"]["upstream"] for r in fired["CoretrafficFailingUpstreams"]}
    assert failing and failing <= {f"127.0.0.1:{port}" for port in dead_ports}, failing
    quiet_ones = ("CoretrafficCertificateExpired", "CoretrafficCaddyBehind", "CoretrafficCoreflowDisconnected")
    for quiet in (*quiet_ones, "CoretrafficHostsStale", "CoretrafficRemovalHeldBack"):
        assert fired[quiet] == [], (quiet, fired[quiet])
    assert fired["CoretrafficDriverDown"] == []
    assert len(fired["CoretrafficRoutesRejected"]) == 1  # the broken host


def test_promtool_accepts_the_rules_and_every_scrape_config() -> None:
    promtool = binary("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    configs = sorted((DEPLOY / "prometheus").glob("scrape-*.yml"))
    assert [c.name for c in configs] == ["scrape-kubernetes.yml", "scrape-single.yml", "scrape-swarm.yml"]
    for config in configs:
        checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, f"{config.name}: {checked.stdout}{checked.stderr}"
