"""Dead, frozen and failing upstreams through a real Caddy: requests go to a live upstream of the same host, a
request with a body is never sent twice, a host whose upstreams all fail answers quickly, and a neighbour is not
harmed; in the flat layout and the bucketed one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddyjson.layout import VERSION_HEADER
from coretraffic.caddyjson.render import RenderSettings
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.caddy import validated
from tests.support.dataplane import https_get
from tests.support.ports import Ports
from tests.support.upstreams import Upstream, refused_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

LAYOUTS = {"flat": 0, "bucketed": 40}  # extra plain hosts: past 16 hosts, plain hosts go into buckets


@pytest.fixture
def render_settings(render_settings: RenderSettings) -> RenderSettings:
    """A frozen upstream's try ends after 1 s here (10 s by default), below the test client's timeout."""
    return dataclasses.replace(render_settings, upstream_response_timeout="1s")


@pytest.fixture
async def live() -> AsyncIterator[Upstream]:
    server = await Upstream().start()
    yield server
    await server.stop()


def host_with(ca: DemoCA, host: str, ports: list[int]) -> dict[str, Any]:
    return {**demo_route(ca, host, ports[0]), "destinationPorts": ports}


async def apply(reconciler: Reconciler, ca: DemoCA, hosts: dict[str, list[int]], layout: str, filler: int) -> None:
    configs = [host_with(ca, host, ports) for host, ports in hosts.items()]
    configs += [host_with(ca, f"f{i:03}.example.test", [filler]) for i in range(LAYOUTS[layout])]
    result = await reconciler.submit(validated(configs))
    assert result.ok, result.summary()


async def post(ca: DemoCA, port: int, host: str, body: bytes) -> httpx.Response:
    trusted = ssl.create_default_context(cadata=ca.certificate_pem)
    async with httpx.AsyncClient(verify=trusted, timeout=30) as client:
        return await client.post(
            f"https://127.0.0.1:{port}/", content=body, headers={"Host": host}, extensions={"sni_hostname": host}
        )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("failing", ["refused", "freeze", "close_after_read"])
async def test_gets_reach_the_live_upstream_and_the_neighbour_never_fails(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream, layout: str, failing: str
) -> None:
    bad = None if failing == "refused" else await Upstream(failing).start()
    neighbour = await Upstream().start()
    try:
        bad_port = refused_port() if bad is None else bad.port
        await apply(
            reconciler,
            ca,
            {"mixed.example.test": [bad_port, live.port], "neighbour.example.test": [neighbour.port]},
            layout,
            neighbour.port,
        )
        statuses, slow = [], 0
        for _ in range(20):
            started = time.monotonic()
            response = await https_get(ca, ports.https, "mixed.example.test")
            slow += time.monotonic() - started > 0.5
            statuses.append((response.status_code, response.text))
            neighbour_response = await https_get(ca, ports.https, "neighbour.example.test")
            assert neighbour_response.status_code == 200
        assert statuses == [(200, str(live.port))] * 20
        assert slow <= 1  # a frozen upstream costs one try of the response timeout, then it is marked down
    finally:
        await neighbour.stop()
        if bad is not None:
            await bad.stop()


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_slow_upstream_is_waited_for_and_keeps_its_share(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream, layout: str
) -> None:
    # Latency is the application's business: slow but within the response timeout is an answer, not a failure.
    slow = await Upstream(delay=0.3).start()
    try:
        await apply(reconciler, ca, {"slow.example.test": [slow.port, live.port]}, layout, live.port)
        answers = [(await https_get(ca, ports.https, "slow.example.test")) for _ in range(8)]
        assert [r.status_code for r in answers] == [200] * 8
        by_slow = [r for r in answers if r.text == str(slow.port)]
        assert len(by_slow) == 4  # round robin: never marked down
        assert len(slow.received) == 4  # and nothing was sent to it twice
    finally:
        await slow.stop()


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_an_upstream_dying_under_load_costs_no_get(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream, layout: str
) -> None:
    dying = await Upstream(delay=0.05).start()
    await apply(reconciler, ca, {"dying.example.test": [dying.port, live.port]}, layout, live.port)
    trusted = ssl.create_default_context(cadata=ca.certificate_pem)
    statuses: list[int] = []

    async def client(client_id: int) -> None:
        async with httpx.AsyncClient(verify=trusted, timeout=30) as http:
            for _ in range(25):
                response = await http.get(
                    f"https://127.0.0.1:{ports.https}/",
                    headers={"Host": "dying.example.test"},
                    extensions={"sni_hostname": "dying.example.test"},
                )
                statuses.append(response.status_code)

    clients = [asyncio.create_task(client(i)) for i in range(4)]
    await wait_until(lambda: _at_least(dying, 10), 20, "the dying upstream to serve some requests")
    await dying.stop()  # in-flight requests lose their connection, later dials are refused
    await asyncio.gather(*clients)
    assert statuses == [200] * 100
    assert len(live.received) > 0


async def _at_least(upstream: Upstream, requests: int) -> bool:
    return len(upstream.received) >= requests


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_post_is_not_replayed_after_it_was_sent(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream, layout: str
) -> None:
    closer = await Upstream("close_after_read").start()
    try:
        await apply(reconciler, ca, {"post.example.test": [closer.port]}, layout, live.port)
        response = await post(ca, ports.https, "post.example.test", b"pay once")
        assert response.status_code == 502
        assert closer.received == [("POST", b"pay once")]
        assert live.received == []
    finally:
        await closer.stop()


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_post_whose_dial_failed_goes_to_the_live_upstream(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream, layout: str
) -> None:
    await apply(reconciler, ca, {"post.example.test": [refused_port(), live.port]}, layout, live.port)
    for _ in range(4):
        assert (await post(ca, ports.https, "post.example.test", b"once")).status_code == 200
    assert [body for method, body in live.received if method == "POST"] == [b"once"] * 4


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_all_upstreams_dead_answers_quickly_naming_the_host_and_logs_it(
    ca: DemoCA,
    reconciler: Reconciler,
    ports: Ports,
    live: Upstream,
    layout: str,
    render_settings: RenderSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = refused_port(), refused_port()
    await apply(reconciler, ca, {"dead.example.test": list(dead)}, layout, live.port)
    caplog.set_level(logging.DEBUG, logger="coretraffic.caddy")
    for _ in range(3):
        started = time.monotonic()
        response = await https_get(ca, ports.https, "dead.example.test")
        assert time.monotonic() - started < 2.0
        assert response.status_code in (502, 503)
        assert response.text == "dead.example.test: no upstream answered\n"  # no address from inside the cluster
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers[VERSION_HEADER] == render_settings.version

    async def logged() -> bool:
        return any(
            r.levelno == logging.WARNING
            and "dead.example.test" in r.getMessage()
            and any(f"127.0.0.1:{port}" in r.getMessage() for port in dead)  # the last one tried
            for r in caplog.records
            if getattr(r, "source", None) == "caddy"
        )

    await wait_until(logged, 5, "Caddy's line about the dead upstream, forwarded as a warning")


async def test_other_errors_keep_caddys_answer(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream
) -> None:
    config = {
        **host_with(ca, "auth.example.test", [live.port]),
        "authentication": {"type": "Basic", "user": "u", "pass": "p"},
    }
    result = await reconciler.submit(validated([config]))
    assert result.ok, result.summary()
    response = await https_get(ca, ports.https, "auth.example.test")
    assert response.status_code == 401
    assert "no upstream" not in response.text
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_dead_host_in_the_neighbours_bucket_does_not_mark_the_neighbour_down(
    ca: DemoCA, reconciler: Reconciler, ports: Ports, live: Upstream
) -> None:
    # Both hosts have one upstream, so they share a bucket and its upstream slot: health must follow the real
    # ip:port, not the slot.
    await apply(
        reconciler,
        ca,
        {"dead.example.test": [refused_port()], "neighbour.example.test": [live.port]},
        "bucketed",
        live.port,
    )
    for _ in range(10):
        assert (await https_get(ca, ports.https, "dead.example.test")).status_code in (502, 503)
        assert (await https_get(ca, ports.https, "neighbour.example.test")).status_code == 200


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_caddy_lists_the_failing_upstream_address_and_not_the_live_one(
    ca: DemoCA, reconciler: Reconciler, admin: CaddyAdmin, ports: Ports, live: Upstream, layout: str
) -> None:
    dead = refused_port()
    await apply(reconciler, ca, {"mixed.example.test": [dead, live.port]}, layout, live.port)
    for _ in range(4):
        assert (await https_get(ca, ports.https, "mixed.example.test")).status_code == 200
    fails = {u["address"]: u["fails"] for u in await admin.upstreams()}
    assert fails[f"127.0.0.1:{dead}"] >= 1
    assert fails.get(f"127.0.0.1:{live.port}", 0) == 0
