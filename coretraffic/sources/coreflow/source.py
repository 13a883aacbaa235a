"""Coreflow as a route source: what `run` starts when there is no routes file.

Wraps the session (`CoreflowClient`, which keeps the connection) around the `updateRouting` handler (which hands
each set to the fleet of Caddies through `intake` and replies with its apply), and tells the status server whether
Coreflow is connected (`RouteSource`).

Coreflow sends its route set as soon as the driver tags itself. A driver that finds its Caddies by DNS (Swarm,
Kubernetes) starts with none: its gates start beside it and appear some seconds later. So the source first waits
for a Caddy (`ready`), up to `FIRST_CADDY_WAIT_S`: then the first set goes to a Caddy that can serve it and its
reply says so, instead of "no Caddy" for what is only start-up order. Past that bound it connects anyway, and
each set is answered with what is true then (no Caddy yet: an error saying it will be applied as Caddies appear).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from coretraffic.core.readings import Reading
from coretraffic.sources.coreflow.handler import make_update_routing_handler
from coretraffic.sources.coreflow.session import CoreflowClient
from coretraffic.sources.intake import Intake

log = logging.getLogger("coretraffic.coreflow")

FIRST_CADDY_WAIT_S = 60.0


class CoreflowSource:
    def __init__(
        self,
        url: str,
        intake: Intake,
        ready: Callable[[], Awaitable[None]] | None = None,
        ready_timeout_s: float = FIRST_CADDY_WAIT_S,
    ) -> None:
        self._url = url
        self._client = CoreflowClient(url, make_update_routing_handler(intake))
        self._ready = ready
        self._ready_timeout_s = ready_timeout_s

    async def run(self) -> None:
        if self._ready is not None:
            try:
                async with asyncio.timeout(self._ready_timeout_s):
                    await self._ready()
            except TimeoutError:
                log.warning(
                    "no Caddy found within %.0f s; connecting to Coreflow anyway (its sets are applied as Caddies "
                    "appear)",
                    self._ready_timeout_s,
                )
        await self._client.run()

    def description(self) -> dict[str, Any]:
        return {
            "coreflow": _without_userinfo(self._url),
            "connected": self._client.connected,
            "reconnects": self._client.reconnects,
        }

    def readings(self) -> tuple[Reading, ...]:
        return (
            Reading(
                "coretraffic_coreflow_connected",
                "1 while connected and tagged at Coreflow",
                "gauge",
                int(self._client.connected),
            ),
            Reading(
                "coretraffic_coreflow_reconnects_total",
                "Connection attempts after the first",
                "counter",
                self._client.reconnects,
            ),
        )


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
