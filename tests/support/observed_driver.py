"""A status server over a driver with something in every part it shows, without a driver or a Caddy.

For the tests that hold the reference to what `/status` and `/metrics` hold: one Caddy (a fake target: its admin
API is the one part that cannot be real in-process) that has applied a set with a rejected host, a failing
upstream and an expired certificate; the real serving policy with a stale host and a held-back removal; the real
route sources (a routes file that went bad, and Coreflow) and a real DNS discovery that has not looked yet.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from coretraffic.app.discovery import DnsDiscovery
from coretraffic.core.serving import ServingPolicy
from coretraffic.core.validate import Validation, validate_route_set
from coretraffic.observe.certificate_expiry import LoadedCertificates
from coretraffic.observe.metrics import ApplyStats
from coretraffic.observe.status import StatusServer
from coretraffic.observe.upstream_failures import UpstreamFailures
from coretraffic.observe.view import DiscoveryView, ServingView, SourceView, TargetView
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.settings import parse_dns_target
from coretraffic.sources.coreflow.source import CoreflowSource
from coretraffic.sources.intake import Intake
from coretraffic.sources.routes_file import RoutesFileSource
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.waiting import wait_until

CADDY = "unix//run/caddy/admin.sock"
UPSTREAM = "127.0.0.1:9001"
HOSTS = [f"h{i:02}.example.test" for i in range(12)]


class FakeCaddy:
    """A spawned Caddy that runs the applied set and counts failures against one upstream."""

    name = CADDY
    running_set = 1
    behind_since: float | None = None
    unavailable_because = ""
    loads, retries, heals = 3, 1, 1
    applied_marker: str | None = "coretraffic_config_0123456789abcdef"
    foreign_parts = ("server metrics",)
    restarts: int | None = 0

    def __init__(self, last_result: ApplyResult) -> None:
        self.last_result: ApplyResult | None = last_result

    async def ping(self) -> None:
        return None

    async def has_id(self, object_id: str) -> bool:
        return object_id == self.applied_marker

    async def upstreams(self) -> list[dict[str, Any]]:
        return [{"address": UPSTREAM, "num_requests": 4, "fails": 2, "hosts": [HOSTS[1]]}]


@dataclass
class View:
    targets: Sequence[TargetView]
    sources: Sequence[SourceView]
    discoveries: Sequence[DiscoveryView]
    serving: ServingView


class _NoFleet:
    """Intake's fleet: never asked here (no set is submitted; the policy is driven directly)."""

    def submit_nowait(self, validation: Validation) -> dict[str, asyncio.Future[ApplyResult]]:
        raise AssertionError("not submitted")

    def unavailable_because(self, name: str) -> str:
        return ""


def _serving_policy() -> tuple[ServingPolicy, Validation]:
    """A policy that served twelve hosts and was then given a set that refuses one and drops ten of them."""
    ca, t0 = DemoCA("reference CA"), datetime.datetime.now(datetime.UTC)
    configs = [demo_route(ca, host, 9001) for host in HOSTS]
    policy = ServingPolicy(datetime.timedelta(seconds=300))
    policy.decide(validate_route_set(configs, t0), t0)
    refused = {**configs[0], "destinationPorts": [0]}
    decision = policy.decide(validate_route_set([refused, configs[1]], t0), t0 + datetime.timedelta(seconds=1))
    assert policy.stale and policy.held is not None, "the policy should hold a stale host and a removal"
    return policy, decision.validation


async def _bad_routes_file(path: Path, intake: Intake) -> RoutesFileSource:
    """A routes-file source whose file is not JSON (as a source sees it: through its own watch)."""
    path.write_text("{not json")
    source = RoutesFileSource(path, intake)
    watch = asyncio.create_task(source.run())

    async def failing() -> bool:
        return source.description()["problem"] is not None

    try:
        await wait_until(failing, 10.0, "the routes file's problem to show")
    finally:
        watch.cancel()
    return source


def _status_server(view: View, result: ApplyResult, validation: Validation) -> StatusServer:
    caddy = view.targets[0]
    stats = ApplyStats()
    stats.observe(caddy.name, result, validation)
    now = time.time()
    stats.certificates = LoadedCertificates(((now - 86_400, HOSTS[2]), *stats.certificates.expiries))
    failures = UpstreamFailures(5.0)
    failures.sample(caddy.name, [{"address": UPSTREAM, "fails": 2, "hosts": [HOSTS[1]]}], now)
    return StatusServer(view, stats, "on", failures)


async def observed_drivers(tmp: Path) -> list[StatusServer]:
    """Status servers over the same driver, one per kind of route source (`/status` shows the one there is)."""
    policy, validation = _serving_policy()
    intake = Intake(_NoFleet(), policy=policy)
    result = ApplyResult(
        "applied",
        tuple(r.host for r in validation.routes),
        validation.errors,
        validation.warnings,
        0.125,
        "HTTP 200",
        stale=validation.stale,
        held_back=policy.held.reason() if policy.held else "",
    )
    caddy = FakeCaddy(result)
    discovery = DnsDiscovery(
        parse_dns_target("https://caddy-admin:2019"), cast(Any, None), cast(Any, None), server="127.0.0.1:53"
    )
    sources: list[SourceView] = [
        await _bad_routes_file(tmp / "routes.json", intake),
        CoreflowSource("http://coreflow:3000", intake),
    ]
    return [_status_server(View([caddy], [source], [discovery], intake), result, validation) for source in sources]
