"""Where route sets enter the loop, from any source: validated once, off the event loop, problems logged, handed
to the fleet of Caddies (`reconcile.fleet.Fleet`). The routes file and Coreflow both come through here, so they
behave the same.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from coretraffic.core import certificates
from coretraffic.core.validate import Validation
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.sources.checked_pairs_file import CheckedPairsFile
from coretraffic.sources.parallel import validate_on_cores

log = logging.getLogger("coretraffic")


class RouteSetSink(Protocol):
    """Where sources hand validated sets: the fleet (`reconcile.fleet.Fleet`)."""

    def submit_nowait(self, validation: Validation) -> Mapping[str, asyncio.Future[ApplyResult]]:
        """Queue the set at every Caddy; by Caddy name, the apply that covers it there."""
        ...

    def unavailable_because(self, name: str) -> str:
        """Why the Caddy `name` has not answered yet (its last error), or ""."""
        ...


class Intake:
    """The sources' way in: `submit` a route set document; with a `record`, checked certificates are kept on
    disk for the next process (`CheckedPairsFile`)."""

    def __init__(self, fleet: RouteSetSink, record: CheckedPairsFile | None = None) -> None:
        self._fleet = fleet
        self._record = record
        self._saving: set[asyncio.Task[None]] = set()

    async def submit(self, document: Any) -> Mapping[str, asyncio.Future[ApplyResult]]:
        """Validate a route set and queue it at every Caddy; each future resolves with the apply that covered it.

        Raises `RouteSetError` (and queues nothing) when the document as a whole is unusable.
        """
        now = datetime.datetime.now(datetime.UTC)
        # PEM parsing is CPU work: off the event loop (in a thread, or in forked workers for a mostly new set), so
        # heartbeats and health checks stay answered.
        validation = await validate_on_cores(document, now, record=self._record)
        for problem in validation.problems:
            level = logging.WARNING if problem.severity == "warning" else logging.ERROR
            log.log(level, "route %s: %s", problem.severity, problem)
        submitted = self._fleet.submit_nowait(validation)
        if self._record is not None:  # after the set is on its way: the write never delays a load
            saving = asyncio.create_task(asyncio.to_thread(self._record.save, certificates.checked_pairs()))
            self._saving.add(saving)
            saving.add_done_callback(self._saving.discard)
        return submitted

    def unavailable_because(self, name: str) -> str:
        """Why the Caddy `name` has not answered yet (its last error), or ""."""
        return self._fleet.unavailable_because(name)
