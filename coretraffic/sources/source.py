"""The route-source protocol: what `run` starts to get route sets, and what the status server shows of each.

A source feeds route sets to the fleet of Caddies (through `intake`) until cancelled, and describes itself in neutral
terms (a dict for `/status`, `core.readings.Reading`s for `/metrics`), so that the driver and the status server
handle any number and kind of sources alike. The routes file (`routes_file.RoutesFileSource`) and Coreflow
(`coreflow.source.CoreflowSource`) are the two today.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from coretraffic.core.readings import Reading


class RouteSource(Protocol):
    # `description` and `readings` are those of `observe.view.SourceView`, declared again rather than inherited:
    # sources and observe are siblings that import neither the other. mypy holds them together where `run`
    # hands its Driver to the status server.

    async def run(self) -> None:
        """Feed route sets to the fleet until cancelled."""
        ...

    def description(self) -> dict[str, Any]: ...

    def readings(self) -> Sequence[Reading]: ...
