"""One Caddy the driver keeps configured: the unit that driving several Caddies will repeat.

A target is that Caddy's admin API client, the reconciler that loads it and, when coretraffic spawned it, the
Caddy process (None for a Caddy it attaches to with `--caddy-admin`). It does for its Caddy what `run` needs:
start the spawned Caddy, run the reconciler and the process supervisor until cancelled, then close the client and
stop the Caddy it started. It answers the status server's questions about its Caddy (`observe.view.TargetView`),
so nothing outside `reconcile` and `app` needs to know what a target is made of.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.reconcile.reconciler import ConfigRenderer, Reconciler, ResultObserver

log = logging.getLogger("coretraffic")


class CaddyTarget:
    def __init__(
        self,
        admin: CaddyAdmin,
        render_config: ConfigRenderer,
        process: CaddyProcess | None = None,
        *,
        on_result: ResultObserver | None = None,
    ) -> None:
        self.admin = admin
        self.process = process
        self.reconciler = Reconciler(admin, render_config, on_result=on_result)

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
    def admin_listen(self) -> str:
        return self.admin.address.listen

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
