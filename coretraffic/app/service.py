"""`coretraffic run`: wires route sources, Caddy targets and the status server together and runs them until a signal.

Assembly only: it loads the operator's base config into the renderer (settings, password cache) that all
Caddies share (`RenderOnce`), makes one target per Caddy (`reconcile.target`: the Caddy it spawns, or each one
`--caddy-admin` names) into a fleet (`reconcile.fleet`) that DNS discovery (`discovery`) may add to, feeds it from
one source (`sources`: the routes file, or Coreflow when there is none) and serves status (health, readiness,
metrics) from what they report. On SIGTERM/SIGINT it stops the sources and the Caddy it started.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from coretraffic.app.discovery import DnsDiscovery
from coretraffic.app.wiring import AdminClients, checked_pairs_record, make_renderer, served_hosts_record
from coretraffic.caddy.process import CaddyProcess
from coretraffic.core.serving import ServingPolicy
from coretraffic.observe.listener_handover import read_tcp_migrate_req, warn_when_off
from coretraffic.observe.metrics import ApplyStats
from coretraffic.observe.status import StatusServer
from coretraffic.observe.upstream_failures import UpstreamFailures, sample_forever, sample_interval
from coretraffic.reconcile.fleet import Fleet
from coretraffic.reconcile.reconciler import ConfigRenderer
from coretraffic.reconcile.render_once import RenderOnce
from coretraffic.reconcile.target import CaddyTarget
from coretraffic.settings import AdminAddress, Settings, parse_dns_target
from coretraffic.sources.coreflow.source import CoreflowSource
from coretraffic.sources.intake import Intake
from coretraffic.sources.routes_file import RoutesFileSource
from coretraffic.sources.source import RouteSource
from coretraffic.sources.trust_store import system_roots


@dataclass
class Driver:
    """The running parts: what `on_started` gets and the status server views (`observe.view.DriverView`)."""

    fleet: Fleet
    sources: list[RouteSource]
    discoveries: list[DnsDiscovery]
    serving: Intake  # what the sources' sets may change of what is served (`observe.view.ServingView`)

    @property
    def targets(self) -> Sequence[CaddyTarget]:
        return self.fleet.targets


async def run_driver(
    settings: Settings,
    on_started: Callable[[Driver], Coroutine[Any, Any, None]] | None = None,
    *,
    advise_sysctl: bool = True,
) -> None:
    """Run until cancelled or signalled. `advise_sysctl`: warn when `tcp_migrate_req` is off (not in the demo, a
    loopback trial whose reloads drop nothing anyone waits for; `/status` shows the value all the same)."""
    renderer = RenderOnce(make_renderer(settings))  # before Caddy starts: a bad base config fails fast
    stats = ApplyStats()
    # The mutual-TLS material is read here, at start, once for every Caddy (discovered ones too).
    make_target = functools.partial(_target, clients=AdminClients(settings), renderer=renderer, stats=stats)
    if settings.spawns_caddy:
        process = CaddyProcess(settings.state_dir)
        fleet = Fleet([make_target(process.admin_address, process=process)])
    else:
        fleet = Fleet(map(make_target, settings.caddy_admin))
    discoveries = [
        DnsDiscovery(
            parse_dns_target(name),
            fleet,
            make_target,
            server=settings.caddy_admin_dns_server,
            interval=settings.caddy_admin_dns_interval,
        )
        for name in settings.caddy_admin_dns
    ]
    served = served_hosts_record(settings)
    intake = Intake(
        fleet,
        checked_pairs_record(settings),
        system_roots(),
        ServingPolicy(datetime.timedelta(seconds=settings.removal_confirm_after), served.load()),
        served,
    )
    driver = Driver(fleet, [_source(settings, fleet, intake)], discoveries, intake)
    # The sysctl acts in the namespace Caddy listens in: this one for a spawned Caddy. A driver that spawns none
    # (Swarm's gates, Kubernetes) cannot read it where it acts, and its own value would mislead: "unknown".
    tcp_migrate_req = read_tcp_migrate_req() if settings.spawns_caddy else "unknown"
    if advise_sysctl:
        warn_when_off(tcp_migrate_req)
    failures = UpstreamFailures(settings.upstream_fail_duration)
    status = StatusServer(driver, stats, tcp_migrate_req, failures)
    try:
        await fleet.start()
        if settings.status_addr:
            await status.listen(settings.status_addr)  # a taken port stops the driver (and its Caddy) here
        sampling = sample_forever(driver, failures, sample_interval(settings.upstream_fail_duration))
        await _serve(driver, on_started, sampling)
    finally:
        await status.close()
        await fleet.close()


def _target(
    address: AdminAddress,
    *,
    clients: AdminClients,
    renderer: ConfigRenderer,
    stats: ApplyStats,
    process: CaddyProcess | None = None,
) -> CaddyTarget:
    admin = clients(address)
    return CaddyTarget(admin, renderer, process, on_result=functools.partial(stats.observe, admin.address.name))


def _source(settings: Settings, fleet: Fleet, intake: Intake) -> RouteSource:
    if settings.routes is None:
        return CoreflowSource(settings.coreflow_url, intake, ready=fleet.first_member)
    return RoutesFileSource(settings.routes, intake)


async def _serve(
    driver: Driver,
    on_started: Callable[[Driver], Coroutine[Any, Any, None]] | None,
    *background: Coroutine[Any, Any, None],
) -> None:
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: main.cancel() if main else None)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(driver.fleet.run())
            for discovery in driver.discoveries:
                tasks.create_task(discovery.run())
            for source in driver.sources:
                tasks.create_task(source.run())
            for work in background:
                tasks.create_task(work)
            if on_started is not None:
                tasks.create_task(on_started(driver))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
