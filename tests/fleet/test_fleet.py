"""One `coretraffic run` keeping three Caddies converged, each Caddy a pod in a network namespace of its own.

Real parts only: the bundled Caddy three times over (each with an upstream in its namespace), real TLS requests
made inside each pod, the driver as a child process, the real TypedSocket peer for Coreflow's reply, Debian's
dnsmasq for discovery. What is timed is bounded by what the issue asks (a restarted Caddy healed within 2 s of
answering; the others' next set not waiting for a frozen one); nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from coretraffic.caddy.process import find_caddy_binary
from coretraffic.testing.admin_gate import gate_config, running_gate, write_mutual_tls
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.caddy_metrics import label_values
from tests.support.coreflow import OK, Peer, update
from tests.support.dns import Dnsmasq
from tests.support.driver import Driver, ready, status_document
from tests.support.paths import REPO
from tests.support.pods import UPSTREAM_PORT, LoopbackCaddy, Pod, require_root
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

HEALED_WITHIN_S = 2.0  # the bound: a Caddy that restarts empty has the set again this soon after answering
NEXT_SET_WITHIN_S = 8.0  # the routes file is polled every second; a load of one host takes milliseconds


def driver_args(ports: Ports, status_port: int, caddies: Sequence[str], *more: str) -> list[str]:
    admin = [flag for name in caddies for flag in ("--caddy-admin", name)]
    return [
        "run", *admin, *more,
        "--http-port", str(ports.http), "--https-port", str(ports.https), "--listen-host", "127.0.0.1",
        "--bcrypt-cost", "4", "--status-addr", f"127.0.0.1:{status_port}", "--log-format", "text",
    ]  # fmt: skip


def routes_file(path: Path, ca: DemoCA, *hosts: str) -> Path:
    path.write_text(json.dumps([demo_route(ca, host, UPSTREAM_PORT) for host in hosts]))
    return path


async def all_serve(pods: Sequence[Pod], ca_file: Path, port: int, host: str) -> bool:
    codes = await asyncio.gather(*(pod.get(ca_file, port, host) for pod in pods))
    return all(code == 200 for code in codes)


def caddies_in(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {caddy["admin"]: caddy for caddy in document.get("caddies", [])}


async def converged(status_port: int) -> bool:
    """Every Caddy runs the set. Readiness alone is not that: it allows a Caddy 10 s behind (fleet readiness)."""
    if not await ready(status_port):
        return False
    caddies = caddies_in(await status_document(status_port))
    return bool(caddies) and all(c["runs_latest_set"] for c in caddies.values())


@contextlib.asynccontextmanager
async def driving_the_pods(
    pods: Sequence[Pod], ca: DemoCA, ports: Ports, status_port: int, short_tmp: Path
) -> AsyncIterator[Path]:
    """A driver for `pods` from a routes file (yielded) of one host, once every pod runs it."""
    routes = routes_file(short_tmp / "routes.json", ca, "one.fleet.test")
    driver = Driver(driver_args(ports, status_port, [pod.name for pod in pods], "--routes", str(routes)))
    try:
        await wait_until(lambda: converged(status_port), 60, "every Caddy running the set")
        yield routes
    finally:
        assert driver.stop() == 0, driver.output


async def test_three_pods_serve_the_set_and_one_killed_and_restarted_empty_is_healed_within_2_s(
    pods: list[Pod], ca: DemoCA, ca_file: Path, ports: Ports, status_port: int, short_tmp: Path
) -> None:
    async with driving_the_pods(pods, ca, ports, status_port, short_tmp):
        assert await all_serve(pods, ca_file, ports.https, "one.fleet.test")
        caddies = caddies_in(await status_document(status_port))
        assert sorted(caddies) == sorted(pod.name for pod in pods)
        assert all(c["runs_latest_set"] and not c["spawned"] for c in caddies.values())
        (marker,) = {c["config_id"] for c in caddies.values()}

        victim, others = pods[1], [pods[0], pods[2]]
        victim.kill()
        victim.start()  # from its bootstrap config: the admin socket and nothing else
        await wait_until(victim.answers, 30, "the restarted Caddy's admin API")
        answered = time.monotonic()
        probes = 0
        while not await victim.runs(marker):
            assert time.monotonic() - answered < HEALED_WITHIN_S, f"not healed {HEALED_WITHIN_S} s after answering"
            assert await all_serve(others, ca_file, ports.https, "one.fleet.test"), "another pod stopped serving"
            probes += 1
        healed_s = time.monotonic() - answered
        assert await all_serve(pods, ca_file, ports.https, "one.fleet.test")
        print(f"healed {healed_s:.2f} s after answering; the other pods served {probes} probes meanwhile")
        heals = caddies_in(await status_document(status_port))[victim.name]["heals"]
        assert heals == 1


async def test_a_frozen_pod_does_not_delay_the_others_next_set_and_catches_up_when_thawed(
    pods: list[Pod], ca: DemoCA, ca_file: Path, ports: Ports, status_port: int, short_tmp: Path
) -> None:
    async with driving_the_pods(pods, ca, ports, status_port, short_tmp) as routes:
        frozen, others = pods[2], pods[:2]
        frozen.freeze()
        routes_file(short_tmp / "next.json", ca, "one.fleet.test", "two.fleet.test").replace(routes)
        took = await wait_until(
            lambda: all_serve(others, ca_file, ports.https, "two.fleet.test"), NEXT_SET_WITHIN_S, "the next set"
        )
        print(f"the next set served by the two live pods {took:.2f} s after the file changed")

        caddies = caddies_in(await status_document(status_port))
        assert not caddies[frozen.name]["runs_latest_set"]
        assert all(caddies[pod.name]["runs_latest_set"] for pod in others)

        async def not_ready_naming_the_frozen_pod() -> bool:
            document = await status_document(status_port)
            return document.get("ready") is False and frozen.name in document["not_ready_because"]

        await wait_until(not_ready_naming_the_frozen_pod, 30, "the fleet not ready once its grace period is over")
        frozen.thaw()
        await wait_until(lambda: all_serve(pods, ca_file, ports.https, "two.fleet.test"), 60, "the thawed pod")
        await wait_until(lambda: ready(status_port), 30, "the fleet ready again")


async def test_the_coreflow_reply_names_the_caddy_that_does_not_serve_the_set(
    pods: list[Pod], peer: Peer, ca: DemoCA, ca_file: Path, ports: Ports, status_port: int
) -> None:
    args = driver_args(ports, status_port, [pod.name for pod in pods])
    driver = Driver(args, env={"CORETRAFFIC_COREFLOW_URL": peer.url})
    try:
        await peer.status(until_tagged=True, wait_s=30)
        first = [demo_route(ca, "one.fleet.test", UPSTREAM_PORT)]
        assert await peer.call("updateRouting", update(first), timeout_s=30) == OK
        assert await all_serve(pods, ca_file, ports.https, "one.fleet.test")

        gone, others = pods[0], pods[1:]
        gone.kill()
        second = [*first, demo_route(ca, "two.fleet.test", UPSTREAM_PORT)]
        reply = await peer.call("updateRouting", update(second), timeout_s=40)
        assert reply["outcome"] == "response", reply
        answer = reply["response"]
        assert answer["status"] == "error"
        text = answer["errorText"]
        assert text.startswith("1 of 3 Caddies do not serve the whole set; [" + gone.name + "] route set accepted")
        assert "unreachable" in text and all(pod.name not in text for pod in others)
        assert await all_serve(others, ca_file, ports.https, "two.fleet.test")
    finally:
        assert driver.stop() == 0, driver.output


async def test_discovery_through_dns_adds_and_removes_caddies(
    ca: DemoCA, ports: Ports, status_port: int, short_tmp: Path
) -> None:
    name, admin_port = "caddies.fleet.test", free_port()
    # Two Caddies on one machine, admin APIs on loopback addresses of their own (DNS records are addresses); their
    # data planes share the HTTPS port, which Caddy binds with SO_REUSEPORT.
    caddies = [LoopbackCaddy(short_tmp / f"caddy{i}", f"127.0.0.{i}", admin_port) for i in (2, 3)]
    dns = await Dnsmasq(short_tmp).start({name: ["127.0.0.2"]})
    for caddy in caddies:
        caddy.start()
    routes = routes_file(short_tmp / "routes.json", ca, "one.fleet.test")
    discovery = ["--caddy-admin-dns", f"{name}:{admin_port}", "--caddy-admin-dns-server", f"127.0.0.1:{dns.port}"]
    args = driver_args(ports, status_port, [], *discovery, "--caddy-admin-dns-interval", "0.2", "--routes", str(routes))
    driver = Driver(args)

    async def members() -> list[str]:
        return sorted(caddies_in(await status_document(status_port)))

    async def members_are(expected: list[str]) -> bool:
        return await members() == expected

    try:
        await wait_until(lambda: ready(status_port), 60, "the fleet of the one published Caddy ready")
        assert await members() == [caddies[0].name]
        assert await caddies[0].hosts() == {"one.fleet.test"}
        assert await caddies[1].hosts() == set()  # not published: not driven

        await dns.set({name: ["127.0.0.2", "127.0.0.3"]})
        await wait_until(lambda: members_are([c.name for c in caddies]), 15, "the second Caddy found")
        await wait_until(lambda: _hosts_are(caddies[1], {"one.fleet.test"}), 15, "the current set loaded into it")
        document = await status_document(status_port)
        assert document["discovery"][0]["instances"] == [c.name for c in caddies]

        await dns.set({name: ["127.0.0.3"]})
        await wait_until(lambda: members_are([caddies[1].name]), 15, "the vanished Caddy dropped")
        await wait_until(lambda: ready(status_port), 30, "the fleet ready with the remaining Caddy")
        metrics = await _metrics_text(status_port)
        assert caddies[0].name not in metrics and f'target="{caddies[1].name}"' in metrics
    finally:
        code = driver.stop()
        print(driver.output)  # shown when the test fails
        assert code == 0
        for caddy in caddies:
            caddy.stop()
        await dns.stop()


async def _hosts_are(caddy: LoopbackCaddy, hosts: set[str]) -> bool:
    return await caddy.hosts() == hosts


async def _metrics_text(port: int) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text


async def test_two_caddies_behind_admin_gates_found_by_dns_over_mutual_tls_converge_and_serve(
    ca: DemoCA, ca_file: Path, ports: Ports, status_port: int, short_tmp: Path
) -> None:
    """The deployments' shape on one machine: each Caddy a pod with its admin socket at the same path (`shared`,
    `/shared` in the pods, by a mount namespace of its own) and an admin gate (deploy/admin-gate.json) on a
    loopback address of its own in front of it; DNS names the gates; the driver dials each address found with the
    name as TLS server name and Host, and every load keeps the socket the gate dials."""
    require_root()
    name, gate_port, gate_hosts = "caddy-admin.fleet.test", free_port(), ["127.0.0.2", "127.0.0.3"]
    shared = short_tmp / "shared"
    shared.mkdir()
    files = write_mutual_tls(short_tmp / "admin-tls", DemoCA("operator admin CA"), name)
    template = json.loads((REPO / "deploy" / "admin-gate.json").read_text())
    routes = routes_file(short_tmp / "routes.json", ca, "one.fleet.test")
    dns = await Dnsmasq(short_tmp).start({name: gate_hosts})
    with contextlib.ExitStack() as stack:
        pods = [Pod(short_tmp / f"pod{i}", mounted_at=shared) for i in range(len(gate_hosts))]
        for pod, host in zip(pods, gate_hosts, strict=True):
            stack.callback(pod.remove)
            pod.start()
            config = gate_config(template, port=gate_port, admin_socket=pod.admin_listen, files=files, host=host)
            gate = running_gate(find_caddy_binary(), config, gate_port, pod.directory / "gate.json", host=host)
            stack.enter_context(gate)
        remote = [
            "--caddy-admin-dns", f"https://{name}:{gate_port}", "--caddy-admin-dns-server", f"127.0.0.1:{dns.port}",
            "--admin-client-cert", str(files.driver_cert), "--admin-client-key", str(files.driver_key),
            "--admin-ca", str(files.ca), "--remote-admin-listen", f"unix/{shared / 'admin.sock'}",
        ]  # fmt: skip
        metrics_port = free_port()  # each pod's own loopback: every Caddy serves its metrics there
        more = ["--routes", str(routes), "--caddy-metrics-listen", f"127.0.0.1:{metrics_port}"]
        driver = Driver(driver_args(ports, status_port, [], *remote, *more))
        try:
            await wait_until(lambda: converged(status_port), 60, "every Caddy behind its gate running the set")
            caddies = caddies_in(await status_document(status_port))
            assert sorted(caddies) == [f"https://{host}:{gate_port}" for host in gate_hosts]
            assert all(c["runs_latest_set"] and c["problem"] == "" for c in caddies.values())
            assert await all_serve(pods, ca_file, ports.https, "one.fleet.test")
            (marker,) = {c["config_id"] for c in caddies.values()}
            for pod in pods:  # through the socket each gate dials: still there after the driver's loads
                assert await pod.runs(marker)
                # The request all_serve sent, counted by that pod's Caddy for its host (per-host metrics, default).
                requests = label_values(await pod.caddy_metrics(metrics_port), "caddy_http_requests", "host")
                assert requests == {"one.fleet.test"}, requests
        finally:
            code = driver.stop()
            print(driver.output)  # shown when the test fails
            await dns.stop()
            assert code == 0
