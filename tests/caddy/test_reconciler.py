"""The reconciler against a real Caddy: coalescing, skip-unchanged, retries, per-host isolation, self-heal."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import HTTPS_SERVER, JSON, route_id
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.core.validate import BasicAuth, Route, Validation
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import running, validated
from tests.support.dataplane import https_get, serves
from tests.support.ports import Ports
from tests.support.waiting import wait_until


async def upstreams_in_caddy(admin: CaddyAdmin, host: str) -> list[str]:
    route = (await admin.get_config())["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    for entry in route:
        if entry.get("@id") == route_id(host):
            return [u["dial"] for h in entry["handle"] if h["handler"] == "reverse_proxy" for u in h["upstreams"]]
    return []


async def test_a_burst_of_1000_sets_costs_at_most_3_loads_and_the_last_wins(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin
) -> None:
    base = validated([demo_route(ca, "burst.example.test", upstream.port)])
    route = base.routes[0]
    futures = []
    for i in range(1000):
        variant = dataclasses.replace(route, upstreams=(f"127.0.0.1:{20000 + i}",))
        futures.append(reconciler.submit_nowait(Validation((variant,), ())))
    results = await asyncio.wait_for(asyncio.gather(*futures), 30)

    assert reconciler.loads <= 3, f"{reconciler.loads} loads for a burst of 1000"
    assert await upstreams_in_caddy(admin, "burst.example.test") == ["127.0.0.1:20999"]
    assert all(r.ok for r in results)  # every submitter is told the truth: its set was covered by a newer one


async def test_unchanged_set_does_not_reload(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin
) -> None:
    validation = validated([demo_route(ca, "same.example.test", upstream.port)])
    first = await reconciler.submit(validation)
    etag = await admin.config_etag()
    again = await reconciler.submit(validated(json.loads(json.dumps(_wire(validation)))))
    assert (first.outcome, again.outcome) == ("applied", "unchanged")
    assert reconciler.loads == 1
    assert await admin.config_etag() == etag


def _wire(validation: Validation) -> list[dict[str, object]]:
    return [
        {
            "hostName": r.host,
            "destinationIps": [u.rsplit(":", 1)[0] for u in r.upstreams],
            "destinationPorts": [int(r.upstreams[0].rsplit(":", 1)[1])],
            "privateKey": r.private_key_pem,
            "publicKey": r.certificate_pem,
        }
        for r in validation.routes
    ]


async def test_one_bad_certificate_among_100_costs_only_its_host(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin, ports: Ports
) -> None:
    configs = [demo_route(ca, f"h{i:03}.example.test", upstream.port) for i in range(100)]
    configs[42]["publicKey"] = str(configs[42]["publicKey"]).replace("M", "N", 5)
    result = await reconciler.submit(validated(configs))

    assert len(result.applied_hosts) == 99
    assert [(p.host, p.field) for p in result.rejected] == [("h042.example.test", "publicKey")]
    for i in (0, 41, 43, 99):
        assert await serves(ca, ports.https, f"h{i:03}.example.test")
    for i in range(100):
        assert await admin.has_id(route_id(f"h{i:03}.example.test")) == (i != 42)


async def test_a_host_caddy_rejects_is_isolated_and_the_rest_applied(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin, ports: Ports
) -> None:
    validation = validated([demo_route(ca, f"r{i}.example.test", upstream.port) for i in range(5)])
    # Bypass validation to stand for whatever it does not catch: Caddy gets a PEM it cannot parse.
    broken = dataclasses.replace(validation.routes[2], certificate_pem="-----BEGIN CERTIFICATE-----\nAAAA\n")
    routes = (*validation.routes[:2], broken, *validation.routes[3:])
    result = await reconciler.submit(Validation(routes, ()))

    assert result.outcome == "applied"
    assert [p.host for p in result.rejected] == ["r2.example.test"]
    assert "Caddy rejected it" in result.rejected[0].message
    assert sorted(result.applied_hosts) == [f"r{i}.example.test" for i in (0, 1, 3, 4)]
    assert await serves(ca, ports.https, "r4.example.test")


async def test_an_error_that_names_no_host_keeps_the_last_good_config(
    ca: DemoCA,
    upstream: DemoUpstream,
    reconciler: Reconciler,
    admin: CaddyAdmin,
    renderer: Callable[[Sequence[Route]], JSON],
    ports: Ports,
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "keep.example.test", upstream.port)]))).ok
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()

        def render_onto_a_busy_port(routes: Sequence[Route]) -> JSON:
            config = renderer(routes)
            config["apps"]["http"]["servers"]["coretraffic_http"]["listen"] = [f"127.0.0.1:{occupied.getsockname()[1]}"]
            return config

        other = Reconciler(admin, render_onto_a_busy_port)
        task = asyncio.create_task(other.run())
        try:
            result = await other.submit(validated([demo_route(ca, "new.example.test", upstream.port)]))
        finally:
            task.cancel()
    assert result.outcome == "failed"
    assert "address already in use" in result.caddy_answer
    assert result.applied_hosts == ()
    assert await serves(ca, ports.https, "keep.example.test")


async def test_caddy_down_then_back_gets_the_set_within_a_second(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, caddy: CaddyProcess, ports: Ports
) -> None:
    await caddy.stop()
    pending = reconciler.submit_nowait(validated([demo_route(ca, "late.example.test", upstream.port)]))
    await wait_until(lambda: _retrying(reconciler), 10, "the reconciler to retry")
    assert not pending.done()

    await caddy.start()  # returns as soon as the admin API answers
    answered = time.monotonic()
    result = await asyncio.wait_for(pending, 10)
    applied_after = time.monotonic() - answered
    assert result.ok
    assert applied_after < 1.5, f"applied {applied_after:.2f} s after Caddy answered"
    assert await serves(ca, ports.https, "late.example.test")


async def _retrying(reconciler: Reconciler) -> bool:
    return reconciler.retries > 0


async def test_spawned_caddy_killed_serves_again_within_2_seconds(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, caddy: CaddyProcess, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "phoenix.example.test", upstream.port)]))).ok
    supervisor = asyncio.create_task(caddy.supervise())
    try:
        assert caddy.pid is not None
        os.kill(caddy.pid, signal.SIGKILL)

        async def down() -> bool:
            return not await serves(ca, ports.https, "phoenix.example.test")

        await wait_until(down, 5, "caddy to die")
        took = await wait_until(lambda: serves(ca, ports.https, "phoenix.example.test"), 10, "serving again")
        assert took < 2.0, f"serving again after {took:.2f} s"
        assert caddy.restarts == 1
    finally:
        supervisor.cancel()


async def test_emptied_caddy_is_healed(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin, caddy: CaddyProcess, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "heal.example.test", upstream.port)]))).ok
    await admin.load(json.dumps({"admin": {"listen": caddy.admin_address.listen}}).encode())
    assert not await serves(ca, ports.https, "heal.example.test")
    took = await wait_until(lambda: serves(ca, ports.https, "heal.example.test"), 10, "the config to be re-applied")
    assert took < 2.5, f"healed after {took:.2f} s"
    assert reconciler.heals == 1


async def test_hand_edit_is_reverted(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "edit.example.test", upstream.port)]))).ok
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=admin.address.location)) as client:
        response = await client.delete(f"http://localhost/id/{route_id('edit.example.test')}")
        assert response.status_code == 200
    assert (await https_get(ca, ports.https, "edit.example.test")).status_code == 404
    await wait_until(lambda: serves(ca, ports.https, "edit.example.test"), 10, "the edit to be reverted")
    assert reconciler.heals == 1


async def test_a_host_route_caddy_rejects_is_isolated_among_buckets(
    ca: DemoCA, upstream: DemoUpstream, admin: CaddyAdmin, render_settings: RenderSettings, ports: Ports
) -> None:
    # Enough hosts for the bucket layout, and one authed host whose password hash Caddy will refuse: the error
    # names that host's route by index, which must be mapped back to it (and never to a whole bucket).
    configs = [demo_route(ca, f"b{i:02}.example.test", upstream.port) for i in range(30)]
    configs[7]["authentication"] = {"type": "Basic", "user": "mallory", "pass": "pw"}
    settings = dataclasses.replace(render_settings, flat_max=4, bucket_size=10)

    def broken_hash(auth: BasicAuth) -> str:
        return "not-a-bcrypt-hash"

    reconciler = Reconciler(admin, lambda routes: render(routes, settings, BaseConfig(), broken_hash))
    task = asyncio.create_task(reconciler.run())
    try:
        result = await reconciler.submit(validated(configs))
    finally:
        task.cancel()
    assert result.outcome == "applied"
    assert [(p.host, p.field) for p in result.rejected] == [("b07.example.test", "config")]
    assert len(result.applied_hosts) == 29
    assert await serves(ca, ports.https, "b29.example.test")


async def test_a_corrupt_rsa_key_that_validation_lets_pass_is_isolated_by_caddys_own_check(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, ports: Ports
) -> None:
    # Validation skips RSA's ~40 ms consistency check (it compares the public half only); Caddy checks the key at
    # load, and its rejection must cost only this host.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.private_numbers()
    corrupt = rsa.RSAPrivateNumbers(
        numbers.p, numbers.q, numbers.d + 2, numbers.dmp1, numbers.dmq1, numbers.iqmp, numbers.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    issued = ca.issue(["corrupt.example.test"], key=key)
    bad = demo_route(ca, "corrupt.example.test", upstream.port)
    bad.update(
        publicKey=issued.certificate_pem,
        privateKey=corrupt.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
    )
    validation = validated([demo_route(ca, "fine.example.test", upstream.port), bad])
    assert validation.problems == ()  # what validation cannot see...
    result = await reconciler.submit(validation)
    assert [(p.host, p.field) for p in result.rejected] == [("corrupt.example.test", "publicKey")]  # ...Caddy does
    assert await serves(ca, ports.https, "fine.example.test")


def _spellings(ca: DemoCA, port: int) -> list[list[dict[str, object]]]:
    """One route set written five ways that Caddy would run identically."""
    hosts = ["a.example.test", "b.example.test", "c.example.test"]
    configs = [demo_route(ca, host, port) for host in hosts]
    for config in configs:
        config["destinationIps"] = ["127.0.0.1", "2001:db8::10"]
        config["destinationPorts"] = [port, port + 1]
    reordered = [
        {**c, "destinationIps": c["destinationIps"][::-1], "destinationPorts": c["destinationPorts"][::-1]}
        for c in configs[::-1]
    ]
    repeated = [{**c, "destinationIps": ["127.0.0.1", "[2001:db8::10]", "127.0.0.1"]} for c in configs]
    spelled = [
        {**c, "hostName": str(c["hostName"]).upper(), "destinationIps": ["127.0.0.1", "2001:DB8:0:0::10"]}
        for c in configs
    ]
    return [configs, reordered, repeated, spelled, json.loads(json.dumps(configs))]


async def test_a_set_caddy_would_run_identically_costs_no_reload(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin
) -> None:
    """Host order, upstream order, repeated upstreams, host-name case and IPv6 spellings change nothing."""
    first, *others = _spellings(ca, upstream.port)
    assert (await reconciler.submit(validated(first))).outcome == "applied"
    etag = await admin.config_etag()
    outcomes = [(await reconciler.submit(validated(variant))).outcome for variant in others]
    assert outcomes == ["unchanged"] * len(others)
    assert reconciler.loads == 1
    assert await admin.config_etag() == etag


class HeldLoads(CaddyAdmin):
    """The real admin API, with each `/load` held at a gate until released: "Caddy is busy loading" made
    deterministic (a load of one route takes milliseconds, too short to send a burst into by chance)."""

    def __init__(self, admin: CaddyAdmin) -> None:
        super().__init__(admin.address)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def load(self, body: bytes) -> None:
        self.waiting += 1
        await self.gate.wait()
        await super().load(body)


async def test_a_burst_arriving_while_a_load_is_in_flight_costs_two_loads_and_the_last_wins(
    ca: DemoCA, upstream: DemoUpstream, admin: CaddyAdmin, renderer: Callable[[Sequence[Route]], JSON]
) -> None:
    """As Coreflow sends them when many services deploy at once: one set, then 200 more while Caddy loads it."""
    route = validated([demo_route(ca, "burst.example.test", upstream.port)]).routes[0]

    def variant(i: int) -> Validation:
        return Validation((dataclasses.replace(route, upstreams=(f"127.0.0.1:{20000 + i}",)),), ())

    held = HeldLoads(admin)
    try:
        async with running(Reconciler(held, renderer)) as reconciler:
            first = reconciler.submit_nowait(variant(0))

            async def first_load_under_way() -> bool:
                return held.waiting == 1

            await wait_until(first_load_under_way, 10, "the first set's load to reach Caddy")
            burst = [reconciler.submit_nowait(variant(i)) for i in range(1, 201)]
            held.gate.set()
            results = await asyncio.wait_for(asyncio.gather(first, *burst), 30)
            assert reconciler.loads == 2, f"{reconciler.loads} loads for a burst of 201"
    finally:
        await held.aclose()
    assert await upstreams_in_caddy(admin, "burst.example.test") == ["127.0.0.1:20200"]
    assert all(r.ok for r in results)
