"""Coreflow as a route source: what `run` starts when there is no routes file.

Wraps the session (`CoreflowClient`, which keeps the connection) around the `updateRouting` handler (which hands
each set to the fleet of Caddies through `intake` and replies with its apply), and tells the status server whether
Coreflow is connected (`RouteSource`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from coretraffic.core.readings import Reading
from coretraffic.sources.coreflow.handler import make_update_routing_handler
from coretraffic.sources.coreflow.session import CoreflowClient
from coretraffic.sources.intake import Intake


class CoreflowSource:
    def __init__(self, url: str, intake: Intake) -> None:
        self._url = url
        self._client = CoreflowClient(url, make_update_routing_handler(intake))

    async def run(self) -> None:
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
