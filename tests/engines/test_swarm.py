"""deploy/swarm/stack.yml on a real Docker Swarm of three nodes (tests/support/engines/swarm.py), deployed as an
operator would (tests/support/engines/deployment.py), with Coreflow's stand-in on the `coreflow` network.

The tests run in file order on one deployment, each leaving it serving as it found it: a fresh deploy answers
its first set `ok` once served; every node serves every host; a new set is served everywhere before its `ok`; a
killed Caddy container is back within a measured bound while the other nodes answer every request; the killed
driver is replaced, re-tags, and no request fails meanwhile; a drained node's Caddy leaves the fleet and comes
back; the stack removed and deployed again serves from the autosave before Coreflow sends anything.

Figures measured here are printed (`pytest -s`) and kept in RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from coretraffic.testing.pki import DemoCA
from tests.support.engines import images
from tests.support.engines.deployment import (
    STACK,
    Deployment,
    driver_get,
    driver_status,
    load_images,
    operator_setup,
    route_set,
    service_log,
    stack_containers,
    start_coreflow,
    start_upstream,
    task_container,
)
from tests.support.engines.probe import Host, ProbeLoop, Tally, client, serves, serves_all
from tests.support.engines.swarm import Swarm
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]

HOSTS = [Host("open.example.test"), Host("locked.example.test", auth=True)]
NEW_HOST = Host("new.example.test")
OK = {"outcome": "response", "response": {"status": "ok", "errorText": ""}}
CADDY_BACK_BOUND_S = 60.0  # a killed Caddy container serves again within this (measured ~7 s: RELIABILITY.md)


def lost_before_any_answer(why: str) -> bool:
    """A request a Caddy stopping or not yet listening loses: refused, or cut in the TLS handshake (ConnectError:
    nothing was sent), or accepted by the old Caddy and closed unread at its shutdown (RELIABILITY.md, "Reloads").
    Not an error status, a certificate error or a timeout."""
    kind, _, message = why.partition(": ")[2].partition(" ")
    if kind == "ConnectError":
        return "certificate" not in message.lower()
    return kind == "RemoteProtocolError" and "without sending a response" in message


CADDY_UPDATE_GAP_BOUND_S = 15.0  # a node's seconds without service in a rolling update of Caddy (~2 s)


def note(text: str) -> None:
    print(f"\n[engines] {text}")


@pytest.fixture(scope="module")
def swarm(built_images: None) -> Iterator[Swarm]:
    made = Swarm(3)
    try:
        started = time.monotonic()
        made.start()
        load_images(made, images.CACHE)
        note(f"swarm of {len(made.nodes)} nodes up, images loaded: {time.monotonic() - started:.1f} s")
        yield made
    finally:
        made.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployment(swarm: Swarm) -> AsyncIterator[Deployment]:
    with tempfile.TemporaryDirectory(prefix="ct-engines-") as name:
        directory = Path(name)
        operator_setup(swarm, directory / "operator")
        start_upstream(swarm.manager)
        coreflow = await start_coreflow(swarm.manager)
        try:
            ca = DemoCA("engine test CA")
            ca_file = directory / "ca.crt"
            ca_file.write_text(ca.certificate_pem)
            made = Deployment(swarm, coreflow, ca, ca_file)
            made.redeploy()
            yield made
        finally:
            await coreflow.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with client(deployment.ca_file) as made:
        yield made


async def send(deployment: Deployment, hosts: list[Host]) -> dict[str, object]:
    return await deployment.coreflow.call(
        "updateRouting", route_set(deployment.ca, hosts, deployment.issued), wait_s=30, timeout_s=60
    )


async def test_a_fresh_deploy_answers_its_first_set_ok_once_it_is_served(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """Coreflow sends its set as soon as the driver tags itself: the driver tags once it has found a Caddy, so
    the reply is about a Caddy, not about start-up order."""
    # Tagged within 120 s: the task starting (~20 s here) plus at most the driver's 60 s wait for a first Caddy.
    status = await deployment.coreflow.status(until_tagged=True, wait_s=120)
    assert status["tagged"], service_log(deployment.swarm.manager, "coretraffic")
    note(f"driver tagged with Coreflow {time.monotonic() - deployment.deployed_at:.1f} s after stack deploy")
    reply = await send(deployment, HOSTS)
    answered = time.monotonic()
    assert reply == OK, service_log(deployment.swarm.manager, "coretraffic")
    # The Caddies the driver had found serve it at once; the rest as their gates are found (the set is theirs
    # as they join).
    serving_at_once = [a for a in deployment.addresses if all([await serves(http, a, h) for h in HOSTS])]
    assert serving_at_once, "the reply was ok but no node serves the set"
    await wait_until(lambda: serves_all(http, deployment.addresses, HOSTS), 120, "every node to serve the first set")
    note(
        f"first set ok {answered - deployment.deployed_at:.1f} s after deploy; serving at once on "
        f"{len(serving_at_once)}/3 nodes, all 3 {time.monotonic() - answered:.1f} s after the reply"
    )


async def test_every_node_serves_every_host_through_its_own_ports(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    for address in deployment.addresses:
        for host in HOSTS:
            assert await serves(http, address, host), (address, host)
    # net.ipv4.tcp_migrate_req acts in each Caddy's namespace: the stack sets it there. The driver, which spawns
    # no Caddy, cannot read it there: it says "unknown" and warns about nothing.
    for node in deployment.swarm.nodes:
        _, container = task_container(deployment.swarm, "caddy", node)
        sysctl = node.docker("exec", container, "cat", "/proc/sys/net/ipv4/tcp_migrate_req").stdout.strip()
        assert sysctl == "1", node.name
    status = driver_status(deployment.swarm)
    assert status["kernel"] == {"tcp_migrate_req": "unknown"}
    assert {caddy["tcp_migrate_req"] for caddy in status["caddies"]} == {"unknown"}
    assert "tcp_migrate_req is 0" not in service_log(deployment.swarm.manager, "coretraffic", lines=1000)
    # A name that is not routed: the node answers, but not with a routed host's page.
    with pytest.raises(httpx.ConnectError):
        await http.get(
            f"https://{deployment.addresses[0]}/",
            headers={"Host": "nobody.example.test"},
            extensions={"sni_hostname": "nobody.example.test"},
        )


async def test_a_new_set_reaches_every_node_before_the_reply_is_ok(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    reply = await send(deployment, [*HOSTS, NEW_HOST])
    assert reply == OK
    for address in deployment.addresses:  # no waiting: `ok` means served everywhere
        assert await serves(http, address, NEW_HOST), address


async def test_a_killed_caddy_container_is_restarted_and_serves_again(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    swarm = deployment.swarm
    victim = swarm.nodes[1]
    others = [n.address for n in swarm.nodes if n is not victim]
    _, container = task_container(swarm, "caddy", victim)
    probes = ProbeLoop(http, others, HOSTS)
    async with probes.running():
        killed = time.monotonic()
        await asyncio.to_thread(victim.docker, "kill", container)
        took = await wait_until(
            lambda: serves_all(http, [victim.address], HOSTS), CADDY_BACK_BOUND_S, "the killed Caddy to serve again"
        )
    note(
        f"killed Caddy serving again after {took:.1f} s (kill at {killed:.0f}); others: "
        + ", ".join(f"{a} {t.ok} ok {t.failed} failed" for a, t in probes.tallies.items())
    )
    for address, tally in probes.tallies.items():
        assert tally.failed == 0 and tally.ok > 0, (address, tally.failures)


async def test_the_driver_killed_is_replaced_retags_and_no_request_fails(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    swarm = deployment.swarm
    node, container = task_container(swarm, "coretraffic")
    before = len((await deployment.coreflow.status())["disconnectReasons"])
    probes = ProbeLoop(http, deployment.addresses, [*HOSTS, NEW_HOST])
    async with probes.running():
        killed = time.monotonic()
        await asyncio.to_thread(node.docker, "kill", container)

        async def retagged() -> bool:
            status = await deployment.coreflow.status()
            return len(status["disconnectReasons"]) > before and bool(status["tagged"])

        took = await wait_until(retagged, 120, "a new driver task to tag itself with Coreflow")
        reply = await send(deployment, [*HOSTS, NEW_HOST])
    assert reply == OK, service_log(swarm.manager, "coretraffic")
    note(
        f"driver killed on {node.name}: re-tagged after {took:.1f} s (at {killed:.0f}); probes: "
        + ", ".join(f"{a} {t.ok} ok {t.failed} failed" for a, t in probes.tallies.items())
    )
    for address, tally in probes.tallies.items():
        assert tally.failed == 0 and tally.ok > 0, (address, tally.failures)


@dataclass
class UpdateCost:
    took_s: float
    tallies: dict[str, Tally]


async def rolling_update(deployment: Deployment, http: httpx.AsyncClient, service: str) -> UpdateCost:
    """`docker service update --image` of `service` to a new tag of the same image, under a probe loop: what it
    costs on each node (failed requests, the longest time between two served requests)."""
    swarm = deployment.swarm
    tag = f"localhost/coretraffic:update-{service}"
    for node in swarm.nodes:
        node.docker("tag", images.PROJECT_IMAGE, tag)
    probes = ProbeLoop(http, deployment.addresses, HOSTS)
    async with probes.running():
        started = time.monotonic()
        # In a thread: the command waits for the whole update, and the probes must go on meanwhile.
        await asyncio.to_thread(
            swarm.manager.docker, "service", "update", "--quiet", "--image", tag, f"{STACK}_{service}", timeout=600
        )
        took = time.monotonic() - started
        await wait_until(lambda: serves_all(http, deployment.addresses, HOSTS), 60, "every node serving after it")
    costs = {a: (t.ok, t.failed, round(t.longest_gap_s, 1)) for a, t in probes.tallies.items()}
    kinds = sorted({why.partition(": ")[2] for t in probes.tallies.values() for why in t.failures})
    note(f"rolling update of {service}: {took:.1f} s; per node (ok, failed, longest gap s): {costs}; {kinds}")
    return UpdateCost(took, probes.tallies)


async def test_a_rolling_update_of_the_driver_costs_no_request(deployment: Deployment, http: httpx.AsyncClient) -> None:
    before = len((await deployment.coreflow.status())["disconnectReasons"])
    cost = await rolling_update(deployment, http, "coretraffic")

    async def retagged() -> bool:
        status = await deployment.coreflow.status()
        return len(status["disconnectReasons"]) > before and bool(status["tagged"])

    await wait_until(retagged, 120, "the updated driver to tag itself with Coreflow")
    assert await send(deployment, HOSTS) == OK
    for address, tally in cost.tallies.items():
        assert tally.failed == 0 and tally.ok > 0, (address, tally.failures)


async def test_a_rolling_update_of_caddy_goes_one_node_at_a_time(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """Host-mode ports: a node's new Caddy can bind 80/443 only once the old one is gone (stop-first), so each
    node refuses connections for a moment; one node at a time (parallelism 1), so the others serve meanwhile."""
    cost = await rolling_update(deployment, http, "caddy")
    windows = []
    for address, tally in cost.tallies.items():
        assert tally.ok > 0 and tally.longest_gap_s < CADDY_UPDATE_GAP_BOUND_S, (address, tally)
        # Refused while no Caddy listens, or closed before any response byte by the old Caddy's shutdown (a request
        # it had accepted but not read: RELIABILITY.md, "Reloads"); never an error status, a TLS error or a timeout.
        assert all(map(lost_before_any_answer, tally.failures)), (address, tally.failures)
        if tally.failed_at:
            windows.append((min(tally.failed_at), max(tally.failed_at), address))
    windows.sort()
    for (_, first_end, first), (second_start, _, second) in itertools.pairwise(windows):
        assert first_end < second_start, f"{first} and {second} were both without service at once: {windows}"
    assert await send(deployment, HOSTS) == OK


async def test_a_drained_node_leaves_the_fleet_and_comes_back_when_active(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    swarm = deployment.swarm
    drained = swarm.nodes[2]

    async def fleet_size(size: int) -> bool:
        return len(driver_status(swarm).get("caddies", [])) == size

    swarm.manager.docker("node", "update", "--availability", "drain", drained.name)
    took = await wait_until(lambda: fleet_size(2), 120, "the drained node's Caddy to leave the fleet")
    status = driver_status(swarm)
    assert status["ready"], status
    metrics = driver_get(swarm, "/metrics")
    gates = {c["admin"] for c in status["caddies"]}
    assert all(gate in metrics for gate in gates)
    note(f"drained {drained.name}: its Caddy left the fleet after {took:.1f} s")
    swarm.manager.docker("node", "update", "--availability", "active", drained.name)
    took = await wait_until(lambda: fleet_size(3), 120, "the node's Caddy back in the fleet")
    await wait_until(lambda: serves_all(http, [drained.address], HOSTS), 60, "the node to serve again")
    note(f"{drained.name} active again: back in the fleet after {took:.1f} s")


async def test_the_stack_removed_and_deployed_again_serves_from_the_autosave(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    swarm = deployment.swarm
    swarm.manager.docker("stack", "rm", STACK)

    async def gone() -> bool:
        return not any(stack_containers(node) for node in swarm.nodes)

    await wait_until(gone, 120, "every container of the stack to be gone")
    answers = len(await deployment.coreflow.answers())
    deployment.redeploy()
    took = await wait_until(
        lambda: serves_all(http, deployment.addresses, HOSTS), 120, "every node to serve from its autosave"
    )
    assert len(await deployment.coreflow.answers()) == answers, "served before Coreflow sent anything"
    note(f"stack deployed again: every node serving from its autosave {took:.1f} s after `docker stack deploy`")
    await deployment.coreflow.status(until_tagged=True, wait_s=120)
    assert await send(deployment, HOSTS) == OK
