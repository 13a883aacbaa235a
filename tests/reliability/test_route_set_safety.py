"""Route sets that must never open a protected host or take hosts down, each against a real Caddy.

- Wildcards beside exact hosts (flat and bucketed, with and without auth): every request is handled by its own
  host's config, its upstream, its auth and its certificate, never a neighbour's (hypothesis).
- A bad rotation of a served host (a key of another certificate, another host's certificate, a port as a string,
  `authentification` for `authentication`): the host keeps serving its last good version, auth included, the
  reply names it stale and why, and the rest of the set applies.
- A typo in `authentication` on a new host: the host is not served at all.
- Empty pushes from Coreflow (the real TypedSocket peer) and from a routes file (a real `coretraffic run`): no host
  is lost; the removal applies when it comes again after the delay, or when an operator confirms it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddyjson.render import RenderSettings
from coretraffic.core.serving import ServingPolicy
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.sources.coreflow.handler import reply_for
from coretraffic.sources.intake import Intake
from coretraffic.testing.pki import DemoCA, IssuedCertificate, demo_route, route_config
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import OneCaddy, renderer_for, running, validated
from tests.support.canary import Canary
from tests.support.coreflow import OK, Peer, connected, update
from tests.support.dataplane import https_get, served_certificate, serves
from tests.support.driver import Driver, command, write_routes
from tests.support.ports import Ports, free_port
from tests.support.status import Status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

SHARED_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
ZONES = ("a.test", "b.test")
LABELS = ("auth", "ec", "www", "api", "x1")
MAX_HOSTS = len(ZONES) + 6
USER = "alice"


# -- wildcards beside exact hosts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostSpec:
    name: str
    auth: bool

    @property
    def password(self) -> str:
        return f"pw-{self.name}"

    @property
    def probe(self) -> str:
        """A name this host's config must answer: itself, or for a wildcard a name no exact host has."""
        return "zz" + self.name[1:] if self.name.startswith("*.") else self.name


@st.composite
def route_sets(draw: st.DrawFn) -> tuple[list[HostSpec], int]:
    wildcards = draw(st.lists(st.sampled_from(ZONES), unique=True, max_size=len(ZONES)))
    exact = draw(
        st.lists(st.tuples(st.sampled_from(LABELS), st.sampled_from(ZONES)), unique=True, min_size=1, max_size=6)
    )
    hosts = [HostSpec(f"*.{zone}", draw(st.booleans())) for zone in wildcards]
    hosts += [HostSpec(f"{label}.{zone}", draw(st.booleans())) for label, zone in exact]
    return draw(st.permutations(hosts)), draw(st.sampled_from([16, 2]))  # flat, or bucketed past 2 hosts


@pytest.fixture
def pool() -> Iterator[list[DemoUpstream]]:
    """One upstream per host of the largest set: an answer names the port, so the host it came for."""
    upstreams = [DemoUpstream().start() for _ in range(MAX_HOSTS)]
    yield upstreams
    for upstream in upstreams:
        upstream.stop()


@pytest.fixture(scope="module")
def certificates() -> dict[str, IssuedCertificate]:
    return {}  # by host, filled as examples need them: issuing is the slow part of an example


@settings(max_examples=15, deadline=datetime.timedelta(seconds=60), suppress_health_check=SHARED_FIXTURES)
@given(case=route_sets())
async def test_every_request_is_handled_by_its_own_hosts_config(
    case: tuple[list[HostSpec], int],
    admin: CaddyAdmin,
    render_settings: RenderSettings,
    ca: DemoCA,
    pool: list[DemoUpstream],
    ports: Ports,
    certificates: dict[str, IssuedCertificate],
) -> None:
    hosts, flat_max = case
    configs = []
    for spec, upstream in zip(hosts, pool, strict=False):
        issued = certificates.setdefault(spec.name, ca.issue([spec.name]))
        config = route_config(spec.name, issued, upstream.port)
        if spec.auth:
            config["authentication"] = {"type": "Basic", "user": USER, "pass": spec.password}
        configs.append(config)
    reconciler = Reconciler(admin, renderer_for(replace(render_settings, flat_max=flat_max)))
    async with running(reconciler):
        result = await reconciler.submit(validated(configs))
    assert result.ok, result.summary()
    authed = [spec for spec in hosts if spec.auth]
    for spec, upstream in zip(hosts, pool, strict=False):
        der = x509.load_pem_x509_certificate(certificates[spec.name].certificate_pem.encode()).public_bytes(
            Encoding.DER
        )
        assert served_certificate(ports.https, spec.probe) == der, f"{spec.probe}: another host's certificate"
        plain = await https_get(ca, ports.https, spec.probe)
        if spec.auth:
            assert plain.status_code == 401, f"{spec.probe} answered {plain.status_code} without credentials"
            for other in authed:
                if other != spec:
                    wrong = await https_get(ca, ports.https, spec.probe, auth=(USER, other.password))
                    assert wrong.status_code == 401, f"{spec.probe} took {other.name}'s password"
            plain = await https_get(ca, ports.https, spec.probe, auth=(USER, spec.password))
        assert plain.status_code == 200, f"{spec.probe}: {plain.status_code}"
        assert plain.json()["upstream"] == upstream.port, f"{spec.probe} was proxied to another host's upstream"


# -- the last good version of a host ----------------------------------------------------------------------------

PROTECTED = "protected.example.test"


def broken(config: dict[str, Any], breakage: str, ca: DemoCA) -> dict[str, Any]:
    if breakage == "key of another certificate":
        return {**config, "privateKey": ca.issue([PROTECTED]).private_key_pem}
    if breakage == "certificate of another host":
        other = ca.issue(["other.example.test"])
        return {**config, "publicKey": other.certificate_pem, "privateKey": other.private_key_pem}
    if breakage == "port as a string":
        return {**config, "destinationPorts": [str(port) for port in config["destinationPorts"]]}
    assert breakage == "authentification for authentication"
    typo = {key: value for key, value in config.items() if key != "authentication"}
    return {**typo, "authentification": config["authentication"]}


@pytest.mark.parametrize(
    "breakage",
    [
        "key of another certificate",
        "certificate of another host",
        "port as a string",
        "authentification for authentication",
    ],
)
async def test_a_bad_rotation_keeps_the_host_serving_its_last_good_version(
    breakage: str,
    reconciler: Reconciler,
    ca: DemoCA,
    upstream: DemoUpstream,
    second_upstream: DemoUpstream,
    ports: Ports,
    canary: Canary,
) -> None:
    intake = Intake(OneCaddy(reconciler))
    protected = canary.route(ca, PROTECTED, upstream.port, password="rotation")
    password = protected["authentication"]["pass"]
    neighbour = canary.route(ca, "neighbour.example.test", upstream.port)
    first = await (await intake.submit([protected, neighbour]))[OneCaddy.name]
    assert first.ok, first.summary()
    certificate = served_certificate(ports.https, PROTECTED)

    moved = {**neighbour, "destinationPorts": [second_upstream.port]}  # the rest of the set still applies
    result = await (await intake.submit([broken(protected, breakage, ca), moved]))[OneCaddy.name]

    reply = reply_for(result)
    assert reply["status"] == "error"
    assert f"stale, serving their last good version: {PROTECTED}" in reply["errorText"]
    assert f"{PROTECTED}: " in reply["errorText"]  # and why its new config was refused
    assert result.stale == (PROTECTED,)
    assert served_certificate(ports.https, PROTECTED) == certificate
    assert (await https_get(ca, ports.https, PROTECTED)).status_code == 401
    answer = await https_get(ca, ports.https, PROTECTED, auth=(USER, password))
    assert answer.status_code == 200 and answer.json()["upstream"] == upstream.port
    assert (await https_get(ca, ports.https, "neighbour.example.test")).json()["upstream"] == second_upstream.port
    (stale,) = intake.description()["stale"]
    assert stale["host"] == PROTECTED and stale["refused_because"] and stale["serving"]["basic_auth"] is True
    canary.check(json.dumps(reply), "the Coreflow reply")
    canary.check(json.dumps(intake.description()), "the serving description")

    fixed = await (await intake.submit([protected, moved]))[OneCaddy.name]
    assert fixed.ok and fixed.stale == () and intake.description()["stale"] == []


@pytest.mark.parametrize("beside_a_wildcard", [False, True])
async def test_a_typo_in_authentication_never_serves_a_new_host(
    beside_a_wildcard: bool,
    reconciler: Reconciler,
    ca: DemoCA,
    upstream: DemoUpstream,
    second_upstream: DemoUpstream,
    ports: Ports,
) -> None:
    """Not even through a wildcard that covers its name: an application behind the wildcard that routes by Host
    would serve the refused host's pages without the auth it was meant to have."""
    intake = Intake(OneCaddy(reconciler))
    good = demo_route(ca, "good.example.test", upstream.port)
    typo = demo_route(ca, "typo.example.test", upstream.port)
    typo["authentification"] = {"type": "Basic", "user": USER, "pass": "secret"}
    wildcard = [demo_route(ca, "*.example.test", second_upstream.port)] if beside_a_wildcard else []
    result = await (await intake.submit([good, typo, *wildcard]))[OneCaddy.name]
    assert [p.field for p in result.rejected] == ["authentification"]
    assert "did you mean 'authentication'?" in reply_for(result)["errorText"]
    assert await serves(ca, ports.https, "good.example.test")
    assert not await serves(ca, ports.https, "typo.example.test")
    if beside_a_wildcard:
        withheld = await https_get(ca, ports.https, "typo.example.test")
        assert withheld.status_code == 503 and "config was refused" in withheld.text
        other = await https_get(ca, ports.https, "other.example.test")
        assert other.json()["upstream"] == second_upstream.port  # the wildcard still takes every other name


# -- empty and near-empty pushes --------------------------------------------------------------------------------

SITES = 12
DELAY_S = 3.0  # the removal guard's delay in these tests (300 s by default)


def sites(ca: DemoCA, upstream: DemoUpstream, count: int = SITES) -> list[dict[str, Any]]:
    return [demo_route(ca, f"site{i:02}.example.test", upstream.port) for i in range(count)]


async def served_hosts(ca: DemoCA, ports: Ports, configs: list[dict[str, Any]]) -> list[str]:
    return [c["hostName"] for c in configs if await serves(ca, ports.https, c["hostName"])]


async def test_an_empty_push_from_coreflow_costs_no_host_until_it_comes_again_after_the_delay(
    peer: Peer, reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    intake = Intake(OneCaddy(reconciler), policy=ServingPolicy(datetime.timedelta(seconds=DELAY_S)))
    configs = sites(ca, upstream)
    names = [c["hostName"] for c in configs]
    async with connected(peer, reconciler, intake=intake):
        assert await peer.call("updateRouting", update(configs)) == OK
        held = await peer.call("updateRouting", update([]))
        held_at = time.monotonic()
        text = held["response"]["errorText"]
        assert held["response"]["status"] == "error" and f"removal of {SITES} hosts of {SITES} held back" in text
        assert await served_hosts(ca, ports, configs) == names
        again = await peer.call("updateRouting", update([]))
        assert again["response"]["status"] == "error" and await served_hosts(ca, ports, configs) == names
        # The delay under test: a removal that comes again only after it is applied. Not a synchronisation.
        await asyncio.sleep(max(0.0, DELAY_S - (time.monotonic() - held_at)))
        assert await peer.call("updateRouting", update([])) == OK
        assert await served_hosts(ca, ports, configs) == []


async def test_a_transient_empty_push_then_the_good_set_costs_not_one_request(
    peer: Peer, reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports
) -> None:
    configs = sites(ca, upstream)
    failed: list[str] = []
    probing = True

    async def probe() -> int:
        sent = 0
        while probing:
            sent += 1
            for name in ("site00.example.test", "site11.example.test"):
                if not await serves(ca, ports.https, name):
                    failed.append(name)
        return sent

    async with connected(peer, reconciler):
        assert await peer.call("updateRouting", update(configs)) == OK
        prober = asyncio.create_task(probe())
        near_empty = await peer.call("updateRouting", update(configs[:1]))
        assert near_empty["response"]["status"] == "error" and "held back" in near_empty["response"]["errorText"]
        assert await peer.call("updateRouting", update(configs)) == OK
        probing = False
        rounds = await prober
    assert rounds > 0 and failed == [], f"{len(failed)} probes failed"
    assert await served_hosts(ca, ports, configs) == [c["hostName"] for c in configs]


# -- a real `coretraffic run` on a routes file: stale hosts and a held removal where an operator sees them -------


@dataclass(frozen=True)
class FileRun:
    """A `coretraffic run` of sites from a routes file, as an operator starts it (not started yet)."""

    status: Status
    routes: Path
    configs: list[dict[str, Any]]
    args: list[str]

    async def serving(self) -> dict[str, Any]:
        """The `serving` section of the driver's `/status` (empty while it does not answer)."""
        try:
            return dict((await self.status.document())["serving"])
        except (httpx.TransportError, ValueError, KeyError):
            return {}

    async def shows(self, key: str) -> bool:
        return bool((await self.serving()).get(key))


@pytest.fixture
def file_run(ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, driver_flags: list[str]) -> FileRun:
    status = Status(free_port())
    routes = short_tmp / "routes.json"
    configs = sites(ca, upstream)
    write_routes(routes, configs)
    return FileRun(
        status, routes, configs, ["run", *driver_flags, "--status-addr", status.address, "--routes", str(routes)]
    )


async def test_a_routes_file_emptied_is_held_back_until_an_operator_confirms_and_a_stale_host_shows(
    file_run: FileRun, ca: DemoCA, ports: Ports
) -> None:
    status, routes, configs = file_run.status, file_run.routes, file_run.configs
    driver = Driver(file_run.args)
    try:
        await wait_until(lambda: serves(ca, ports.https, "site11.example.test"), 60, "the sites served")
        bad_key = ca.issue(["site00.example.test"]).private_key_pem
        write_routes(routes, [{**configs[0], "privateKey": bad_key}, *configs[1:]])
        await wait_until(lambda: file_run.shows("stale"), 30, "site00 stale in /status")
        assert await status.metric("coretraffic_hosts_stale") == 1
        printed = command("status", "--status-addr", status.address).stdout
        assert "STALE site00.example.test since " in printed and "privateKey: does not match" in printed
        # Under the Caddy, the stale host's refused config and its served last good version say what they are.
        assert f"routes: {SITES} applied, 1 rejected (1 of them stale: " in printed
        assert await serves(ca, ports.https, "site00.example.test")

        write_routes(routes, [])
        await wait_until(lambda: file_run.shows("removal_held_back"), 30, "the removal held back in /status")
        held = (await file_run.serving())["removal_held_back"]
        assert held["hosts"] == SITES and held["served"] == SITES
        assert await status.metric("coretraffic_removal_held_hosts") == SITES
        assert f"coretraffic confirm-removal {held['id']}" in command("status", "--status-addr", status.address).stdout
        assert await served_hosts(ca, ports, configs) == [c["hostName"] for c in configs]

        wrong = command("confirm-removal", "0123456789ab", "--status-addr", status.address)
        assert wrong.returncode == 2 and f"the removal held back now is {held['id']}" in wrong.stderr
        confirmed = command("confirm-removal", held["id"], "--status-addr", status.address)
        assert confirmed.returncode == 0, confirmed.stderr
        assert f"removal {held['id']} confirmed" in confirmed.stdout
        await wait_until(lambda: _not(serves(ca, ports.https, "site11.example.test")), 30, "the sites removed")
        assert (await file_run.serving())["removal_held_back"] is None
        assert f"removal {held['id']} of {SITES} hosts confirmed by an operator" in driver.output
    finally:
        assert driver.stop() == 0, driver.output


async def test_a_restarted_driver_holds_back_a_first_set_that_would_remove_what_the_last_one_served(
    file_run: FileRun, ca: DemoCA, ports: Ports
) -> None:
    first = Driver(file_run.args)
    try:
        await wait_until(lambda: serves(ca, ports.https, "site11.example.test"), 60, "the sites served")
    finally:
        assert first.stop() == 0, first.output
    write_routes(file_run.routes, [])
    second = Driver(file_run.args)
    try:

        async def whole_set_held() -> bool:
            return bool(((await file_run.serving()).get("removal_held_back") or {}).get("whole_set"))

        await wait_until(whole_set_held, 60, "the whole first set held back")
        hold = (await file_run.serving())["removal_held_back"]
        assert hold["hosts"] == SITES and hold["served"] == SITES
        # The spawned Caddy resumed its autosave; nothing of the empty set was applied to it.
        assert await served_hosts(ca, ports, file_run.configs) == [c["hostName"] for c in file_run.configs]
        assert "route set held back: removal of 12 hosts of 12 held back" in second.output
        confirmed = command("confirm-removal", hold["id"], "--status-addr", file_run.status.address)
        assert confirmed.returncode == 0, confirmed.stderr
        await wait_until(lambda: _not(serves(ca, ports.https, "site00.example.test")), 30, "the sites removed")
    finally:
        assert second.stop() == 0, second.output


async def _not(check: Any) -> bool:
    return not await check
