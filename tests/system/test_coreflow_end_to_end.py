"""The whole loop: the real TypedSocket server (as Coreflow) -> CoreflowClient -> updateRouting handler ->
reconciler -> a real Caddy -> real HTTPS requests."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.layout import ROUTE_ID_PREFIX
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import ids_in
from tests.support.coreflow import OK, Peer, connected, update
from tests.support.dataplane import serves
from tests.support.ports import Ports
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


async def served_route_ids(admin: CaddyAdmin) -> set[str]:
    return ids_in(await admin.get_config(), ROUTE_ID_PREFIX)


async def test_one_route_is_served_and_the_reply_is_ok(
    peer: Peer, reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    async with connected(peer, reconciler):
        reply = await peer.call("updateRouting", update([demo_route(ca, "one.example.test", upstream.port)]))
    assert reply == OK
    assert await serves(ca, ports.https, "one.example.test")


async def test_2000_routes_with_rsa_certificates_over_5_mb(
    peer: Peer, reconciler: Reconciler, admin: CaddyAdmin, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # RSA PEMs: the size real updates have
    configs = []
    for i in range(2000):
        issued = ca.issue([f"h{i:04}.example.test"], key=key)
        configs.append(
            {
                "hostName": f"h{i:04}.example.test",
                "destinationIps": ["127.0.0.1"],
                "destinationPorts": [upstream.port],
                "privateKey": issued.private_key_pem,
                "publicKey": issued.certificate_pem,
            }
        )
    assert len(json.dumps(update(configs))) > 5_000_000
    async with connected(peer, reconciler):
        reply = await peer.call("updateRouting", update(configs), timeout_s=90)
    assert reply == OK
    assert await served_route_ids(admin) == {str(c["hostName"]) for c in configs}
    for i in (0, 999, 1999):
        assert await serves(ca, ports.https, f"h{i:04}.example.test")
    [answer] = await peer.answers()
    assert answer["requestBytes"] <= 2  # the answer never echoes the 5 MB request


async def test_a_bad_certificate_is_named_and_the_others_served(
    peer: Peer, reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    configs = [demo_route(ca, f"s{i}.example.test", upstream.port) for i in range(3)]
    configs[1]["publicKey"] = demo_route(ca, "elsewhere.example.test", upstream.port)["publicKey"]
    configs[1]["privateKey"] = "CANARY-PRIVATE-KEY-" + str(configs[1]["privateKey"])
    async with connected(peer, reconciler):
        reply = await peer.call("updateRouting", update(configs))
    response = reply["response"]
    assert response["status"] == "error"
    assert response["errorText"].startswith("2 hosts served, 1 rejected; s1.example.test: ")
    assert "CANARY" not in response["errorText"]
    assert await serves(ca, ports.https, "s0.example.test")
    assert await serves(ca, ports.https, "s2.example.test")


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ([], "malformed updateRouting request: expected an object, got list"),
        ({"reverseConfigs": "all"}, "malformed updateRouting request: 'reverseConfigs' must be a list"),
        ({"routes": []}, "malformed updateRouting request: expected a JSON array of configs or an object with"),
    ],
)
async def test_a_malformed_request_changes_nothing(
    peer: Peer,
    reconciler: Reconciler,
    ca: DemoCA,
    upstream: DemoUpstream,
    ports: Ports,
    request_body: Any,
    expected: str,
) -> None:
    async with connected(peer, reconciler):
        assert await peer.call("updateRouting", update([demo_route(ca, "keep.example.test", upstream.port)])) == OK
        loads = reconciler.loads
        reply = await peer.call("updateRouting", request_body)
    assert reply["response"]["status"] == "error"
    assert reply["response"]["errorText"].startswith(expected)
    assert reconciler.loads == loads
    assert await serves(ca, ports.https, "keep.example.test")


async def test_unknown_method_gets_the_typed_error(peer: Peer, reconciler: Reconciler) -> None:
    async with connected(peer, reconciler):
        reply = await peer.call("deleteEverything", {})
    assert reply["outcome"] == "typedError"
    assert reply["text"] == "There is no available method for this call on the server side"


async def test_caddy_down_gets_a_bounded_reply_and_the_set_later(
    peer: Peer, reconciler: Reconciler, caddy: CaddyProcess, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    await caddy.stop()
    async with connected(peer, reconciler, deadline_s=1.0):
        reply = await peer.call("updateRouting", update([demo_route(ca, "later.example.test", upstream.port)]))
        assert reply["response"]["status"] == "error"
        assert "accepted but not applied yet" in reply["response"]["errorText"]
        await caddy.start()
        await wait_until(lambda: serves(ca, ports.https, "later.example.test"), 10, "the set applied")


async def test_coreflow_restarted_retags_and_the_next_update_is_applied(
    peers: Callable[..., Awaitable[Peer]], reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    first = await peers()
    async with connected(first, reconciler):
        assert await first.call("updateRouting", update([demo_route(ca, "before.example.test", upstream.port)])) == OK
        await first.stop()
        assert await serves(ca, ports.https, "before.example.test")  # routes keep serving through the outage
        second = await peers(first.port)
        await second.status(until_tagged=True, wait_s=5)
        reply = await second.call("updateRouting", update([demo_route(ca, "after.example.test", upstream.port)]))
    assert reply == OK
    assert await serves(ca, ports.https, "after.example.test")
