"""One Caddy the driver keeps configured: the unit a fleet (`fleet.Fleet`) repeats for every Caddy.

A target is that Caddy's admin API client, the reconciler that loads it and, when coretraffic spawned it, the
Caddy process (None for a Caddy it attaches to with `--caddy-admin` or finds by DNS). It does for its Caddy what
`run` needs: start the spawned Caddy, run the reconciler and the process supervisor until cancelled, then close
the client and stop the Caddy it started. It counts the sets the fleet gave it (`submit`) against those its Caddy
runs, for readiness. It answers the status server's questions about its Caddy (`observe.view.TargetView`), so
nothing outside `reconcile` and `app` needs to know what a target is made of.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.core.validate import Validation
from coretraffic.reconcile.reconciler import ApplyResult, ConfigRenderer, Reconciler, ResultObserver

log = logging.getLogger("coretraffic")


class CaddyTarget:
    def __init__(
        self,
        admin: CaddyAdmin,
        render_config: ConfigRenderer,
        process: CaddyProcess | None = None,
        *,
        on_result: ResultObserver | None = None,
        heal_interval: float = 1.0,
    ) -> None:
        self.admin = admin
        self.process = process
        self.reconciler = Reconciler(admin, render_config, on_result=on_result, heal_interval=heal_interval)
        self.name = admin.address.name
        self._given = 0  # the fleet's number of the latest set given to this Caddy (0: none yet)
        self._running = 0  # ... of the latest set it was loaded with (the apply did not fail)
        self._behind_since: float | None = None  # monotonic time since when it has not run the latest set

    def submit(self, validation: Validation, number: int) -> asyncio.Future[ApplyResult]:
        """Queue the fleet's set `number` at this Caddy's reconciler; the future tells how its apply went."""
        self._given = number
        if self._behind_since is None:
            self._behind_since = time.monotonic()
        future = self.reconciler.submit_nowait(validation)
        future.add_done_callback(functools.partial(self._applied, number))
        return future

    def _applied(self, number: int, future: asyncio.Future[ApplyResult]) -> None:
        if not future.cancelled() and future.result().outcome != "failed":
            self._running = max(self._running, number)
        if self._running == self._given:
            self._behind_since = None

    async def start(self) -> None:
        """Start the spawned Caddy (an attached one is expected to run already)."""
        if self.process is not None:
            await self.process.start()

    async def run(self) -> None:
        """Keep the Caddy loaded (and the spawned one running) until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.reconciler.run())
            if self.process is not None:
                tasks.create_task(self.process.supervise())

    async def close(self) -> None:
        """Close the admin client and stop the Caddy this target started; safe after a failed `start`."""
        await self.admin.aclose()
        if self.process is not None and self.process.pid is not None:
            await self.process.stop()
            log.info("caddy stopped")

    # -- what the status server reads (observe.view.TargetView) --------------------------------------------

    @property
    def running_set(self) -> int:
        """The fleet's number of the newest set this Caddy was loaded with (0: none); its marker tells whether
        it still runs it."""
        return self._running

    @property
    def behind_since(self) -> float | None:
        """Monotonic time since when it has not run the latest set (given a newer one, or found to have lost
        it); None when it runs it, or nothing says otherwise yet."""
        times = [t for t in (self._behind_since, self.reconciler.drifted_at) if t is not None]
        return min(times, default=None)

    @property
    def last_result(self) -> ApplyResult | None:
        return self.reconciler.last_result

    @property
    def unavailable_because(self) -> str:
        return self.reconciler.unavailable_because

    @property
    def loads(self) -> int:
        return self.reconciler.loads

    @property
    def retries(self) -> int:
        return self.reconciler.retries

    @property
    def heals(self) -> int:
        return self.reconciler.heals

    @property
    def applied_marker(self) -> str | None:
        return self.reconciler.applied_marker

    @property
    def foreign_parts(self) -> tuple[str, ...]:
        return self.reconciler.foreign_parts

    @property
    def restarts(self) -> int | None:
        return self.process.restarts if self.process is not None else None

    async def ping(self) -> None:
        await self.admin.ping()

    async def has_id(self, object_id: str) -> bool:
        return await self.admin.has_id(object_id)

    async def upstreams(self) -> list[dict[str, Any]]:
        listed = await self.admin.upstreams()
        return [{**u, "hosts": self.reconciler.hosts_of_upstream(str(u.get("address")))} for u in listed]
