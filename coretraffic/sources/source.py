"""The route-source protocol: what `run` starts to get route sets, and what the status server shows of each.

A source feeds route sets to the reconciler (through `intake`) until cancelled, and describes itself in neutral
terms (`observe.view.SourceView`: a dict for `/status`, metric readings for `/metrics`), so that the driver and
the status server handle any number and kind of sources alike. The routes file (`routes_file.RoutesFileSource`)
and Coreflow (`coreflow.source.CoreflowSource`) are the two today.
"""

from __future__ import annotations

from typing import Protocol

from coretraffic.observe.view import SourceView


class RouteSource(SourceView, Protocol):
    async def run(self) -> None:
        """Feed route sets to the reconciler until cancelled."""
        ...
