"""`coretraffic run`: wires a route source, the reconciler and Caddy together and runs them until a signal.

Assembly only: it starts (or attaches to) Caddy, loads the operator's base config, builds the renderer with its
settings and password cache, feeds the reconciler from the routes file or from Coreflow and serves status
(health, readiness, metrics). On SIGTERM/SIGINT it stops the sources and the Caddy it started.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from coretraffic.app.wiring import admin_address, make_renderer
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.errors import RouteSetError
from coretraffic.observe.status import ApplyStats, StatusServer
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.settings import Settings
from coretraffic.sources.coreflow.handler import make_update_routing_handler
from coretraffic.sources.coreflow.session import CoreflowClient
from coretraffic.sources.intake import submit_route_set
from coretraffic.sources.routes_file import watch_routes_file

log = logging.getLogger("coretraffic")


@dataclass
class Driver:
    """The running parts, for sources and tests to reach."""

    settings: Settings
    admin: CaddyAdmin
    reconciler: Reconciler
    caddy: CaddyProcess | None
    coreflow: CoreflowClient | None


async def run_driver(
    settings: Settings, on_started: Callable[[Driver], Coroutine[Any, Any, None]] | None = None
) -> None:
    """Run until cancelled or signalled."""
    caddy = None if settings.caddy_admin else CaddyProcess(settings.state_dir)
    address = admin_address(settings)
    renderer = make_renderer(settings)  # before Caddy starts: a bad base config fails fast
    admin = CaddyAdmin(address)
    stats = ApplyStats()
    reconciler = Reconciler(admin, renderer, on_result=stats.observe)
    coreflow = None
    if settings.routes is None:
        coreflow = CoreflowClient(settings.coreflow_url, make_update_routing_handler(reconciler))
    driver = Driver(settings, admin, reconciler, caddy, coreflow)
    status = StatusServer(driver, stats)
    try:
        if caddy is not None:
            await caddy.start()
        if settings.status_addr:
            await status.listen(settings.status_addr)  # a taken port stops the driver (and its Caddy) here
        await _serve(driver, on_started)
    finally:
        await status.close()
        await admin.aclose()
        if caddy is not None and caddy.pid is not None:
            await caddy.stop()
            log.info("caddy stopped")


async def _serve(driver: Driver, on_started: Callable[[Driver], Coroutine[Any, Any, None]] | None) -> None:
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: main.cancel() if main else None)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(driver.reconciler.run())
            if driver.caddy is not None:
                tasks.create_task(driver.caddy.supervise())
            tasks.create_task(_source(driver))
            if on_started is not None:
                tasks.create_task(on_started(driver))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _source(driver: Driver) -> None:
    routes_path = driver.settings.routes
    if routes_path is None:
        assert driver.coreflow is not None  # run_driver makes a Coreflow client when there is no routes file
        await driver.coreflow.run()
        return

    async def submit(document: Any) -> None:
        try:
            await submit_route_set(driver.reconciler, document)  # the reconciler logs the outcome
        except RouteSetError as exc:
            log.error("route set rejected as a whole: %s; keeping the last good config", exc)

    await watch_routes_file(routes_path, submit)
