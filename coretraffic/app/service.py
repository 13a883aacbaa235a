"""`coretraffic run`: wires route sources, Caddy targets and the status server together and runs them until a signal.

Assembly only: it loads the operator's base config into the renderer (settings, password cache), makes one
target per Caddy (`reconcile.target`: today one, the Caddy it spawns or the one `--caddy-admin` names), feeds
them from one source (`sources`: the routes file, or Coreflow when there is none) and serves status (health,
readiness, metrics) from what they report. On SIGTERM/SIGINT it stops the sources and the Caddy it started.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from coretraffic.app.wiring import admin_client, make_renderer
from coretraffic.caddy.process import CaddyProcess
from coretraffic.observe.listener_handover import read_tcp_migrate_req, warn_when_off
from coretraffic.observe.status import ApplyStats, StatusServer
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.reconcile.target import CaddyTarget
from coretraffic.settings import Settings
from coretraffic.sources.coreflow.source import CoreflowSource
from coretraffic.sources.routes_file import RoutesFileSource
from coretraffic.sources.source import RouteSource


@dataclass
class Driver:
    """The running parts: what `on_started` gets and the status server views (`observe.view.DriverView`)."""

    targets: list[CaddyTarget]
    sources: list[RouteSource]


async def run_driver(
    settings: Settings, on_started: Callable[[Driver], Coroutine[Any, Any, None]] | None = None
) -> None:
    """Run until cancelled or signalled."""
    process = None if settings.caddy_admin else CaddyProcess(settings.state_dir)
    renderer = make_renderer(settings)  # before Caddy starts: a bad base config fails fast
    stats = ApplyStats()
    target = CaddyTarget(admin_client(settings), renderer, process, on_result=stats.observe)
    driver = Driver([target], [_source(settings, target.reconciler)])
    tcp_migrate_req = read_tcp_migrate_req()
    warn_when_off(tcp_migrate_req)
    status = StatusServer(driver, stats, tcp_migrate_req)
    try:
        for each in driver.targets:
            await each.start()
        if settings.status_addr:
            await status.listen(settings.status_addr)  # a taken port stops the driver (and its Caddy) here
        await _serve(driver, on_started)
    finally:
        await status.close()
        for each in driver.targets:
            await each.close()


def _source(settings: Settings, reconciler: Reconciler) -> RouteSource:
    if settings.routes is None:
        return CoreflowSource(settings.coreflow_url, reconciler)
    return RoutesFileSource(settings.routes, reconciler)


async def _serve(driver: Driver, on_started: Callable[[Driver], Coroutine[Any, Any, None]] | None) -> None:
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: main.cancel() if main else None)
    try:
        async with asyncio.TaskGroup() as tasks:
            for target in driver.targets:
                tasks.create_task(target.run())
            for source in driver.sources:
                tasks.create_task(source.run())
            if on_started is not None:
                tasks.create_task(on_started(driver))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
