"""Upstreams named by DNS (a `destinationIps` entry that is a name) through a real Caddy and a real DNS server.

Caddy resolves a name when it opens a connection to it, not when a config is loaded: a name that moves is
followed without a reload once the old connections are gone (the old container died, or they idled out), and a
name that stops resolving fails the dial, which is retried on the host's other upstreams. Caddy resolves with the
system's resolver; here the rendered proxies are pointed at the test's own dnsmasq (`transport.resolver`), the one
change made to what coretraffic renders.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from coretraffic.caddyjson.layout import HTTPS_SERVER, JSON
from coretraffic.core.validate import Route
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.caddy import validated
from tests.support.dataplane import https_get
from tests.support.dns import Dnsmasq
from tests.support.ports import Ports
from tests.support.upstreams import Upstream

pytestmark = pytest.mark.timeout(120)

NAME = "app.cluster.test"


@pytest.fixture
async def dns(short_tmp: Path) -> AsyncIterator[Dnsmasq]:
    server = await Dnsmasq(short_tmp).start({})
    yield server
    await server.stop()


@pytest.fixture
def renderer(renderer: Callable[[Sequence[Route]], JSON], dns: Dnsmasq) -> Callable[[Sequence[Route]], JSON]:
    def resolving_with_the_test_dns(routes: Sequence[Route]) -> JSON:
        config = renderer(routes)
        for route in config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]:
            for handler in route.get("handle", []):
                if handler.get("handler") == "reverse_proxy":
                    handler["transport"]["resolver"] = {"addresses": [dns.address]}
        return config

    return resolving_with_the_test_dns


@pytest.fixture
async def upstreams() -> AsyncIterator[list[Upstream]]:
    """Three upstreams on one port, at 127.0.0.2, .3 and .4: what a name resolves to tells them apart."""
    first = await Upstream(address="127.0.0.2").start()
    servers = [first, *[await Upstream(address=a, listen_port=first.port).start() for a in ("127.0.0.3", "127.0.0.4")]]
    yield servers
    for server in servers:
        await server.stop()


def named(ca: DemoCA, host: str, ips: list[str], port: int) -> dict[str, object]:
    return {**demo_route(ca, host, port), "destinationIps": ips}


async def test_a_name_that_moves_is_followed_without_a_reload(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, dns: Dnsmasq, upstreams: list[Upstream]
) -> None:
    old, new, _ = upstreams
    await dns.set({NAME: "127.0.0.2"})
    assert (await reconciler.submit(validated([named(ca, "named.example.test", [NAME], old.port)]))).ok
    loads = reconciler.loads
    assert (await https_get(ca, ports.https, "named.example.test")).status_code == 200
    assert len(old.received) == 1

    # A rolling deploy: the name now points at the new container, and the old one is gone.
    await dns.set({NAME: "127.0.0.3"})
    await old.stop()
    statuses = [(await https_get(ca, ports.https, "named.example.test")).status_code for _ in range(10)]
    assert statuses == [200] * 10
    assert len(new.received) == 10
    assert reconciler.loads == loads  # no reload: Caddy resolved the name again for its new connection


async def test_a_name_that_stops_resolving_costs_no_get_while_another_upstream_lives(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, dns: Dnsmasq, upstreams: list[Upstream]
) -> None:
    named_one, _, literal = upstreams
    await dns.set({NAME: "127.0.0.2"})
    configs = [
        named(ca, "mixed.example.test", [NAME, "127.0.0.4"], literal.port),
        named(ca, "only-name.example.test", [NAME], literal.port),
    ]
    assert (await reconciler.submit(validated(configs))).ok
    for _ in range(4):
        assert (await https_get(ca, ports.https, "mixed.example.test")).status_code == 200
    assert named_one.received and literal.received  # round robin over the name and the address

    await dns.set({})  # NXDOMAIN from now on
    await named_one.stop()
    statuses = [(await https_get(ca, ports.https, "mixed.example.test")).status_code for _ in range(10)]
    assert statuses == [200] * 10

    started = time.monotonic()
    response = await https_get(ca, ports.https, "only-name.example.test")
    assert time.monotonic() - started < 2.0
    assert response.status_code == 502
    assert response.text == "only-name.example.test: no upstream answered\n"
