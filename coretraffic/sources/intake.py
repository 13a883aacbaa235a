"""Where route sets enter the loop, from any source: validated once, off the event loop, problems logged, handed
to the fleet of Caddies (`reconcile.fleet.Fleet`). The routes file and Coreflow both come through here, so they
behave the same.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from coretraffic.core.certificates import Certificate
from coretraffic.core.trust import TrustedRoots
from coretraffic.core.validate import Validation, checked_pairs
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.sources.checked_pairs_file import CheckedPairsFile
from coretraffic.sources.parallel import validate_on_cores

log = logging.getLogger("coretraffic")

_Pairs = Sequence[tuple[tuple[str, str], Certificate]]
# How long the record of checked certificates waits for the first Caddy to take a set before it is written anyway.
SAVE_AFTER_S = 120.0


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
    disk for the next process (`CheckedPairsFile`); with `roots` (the system's), a chain that reaches none is
    warned about (`core.trust`)."""

    def __init__(
        self, fleet: RouteSetSink, record: CheckedPairsFile | None = None, roots: TrustedRoots | None = None
    ) -> None:
        self._fleet = fleet
        self._record = record
        self._roots = roots
        # The newest set's pairs, not written yet, and its applies; the task that writes them.
        self._latest: tuple[_Pairs, Mapping[str, asyncio.Future[ApplyResult]]] | None = None
        self._saver: asyncio.Task[None] | None = None

    async def submit(self, document: Any) -> Mapping[str, asyncio.Future[ApplyResult]]:
        """Validate a route set and queue it at every Caddy; each future resolves with the apply that covered it.

        Raises `RouteSetError` (and queues nothing) when the document as a whole is unusable.
        """
        now = datetime.datetime.now(datetime.UTC)
        # PEM parsing is CPU work: off the event loop (in a thread, or in forked workers for a mostly new set), so
        # heartbeats and health checks stay answered.
        validation = await validate_on_cores(document, now, record=self._record, roots=self._roots)
        for problem in validation.problems:
            level = logging.WARNING if problem.severity == "warning" else logging.ERROR
            log.log(level, "route %s: %s", problem.severity, problem)
        submitted = self._fleet.submit_nowait(validation)
        if self._record is not None:
            self._latest = (checked_pairs(), submitted)
            if self._saver is None or self._saver.done():
                self._saver = asyncio.create_task(self._save_latest(self._record))
        return submitted

    async def _save_latest(self, record: CheckedPairsFile) -> None:
        """Write the record for the newest set once it is rendered and loaded somewhere: writing is Python work in
        this process, and beside the render (one for every Caddy) it would delay the load. A Caddy that does not
        answer holds it back for a while only. Only the newest set's pairs wait (a burst keeps one copy)."""
        while self._latest is not None:
            pairs, submitted = self._latest
            if submitted:
                await asyncio.wait(submitted.values(), timeout=SAVE_AFTER_S, return_when=asyncio.FIRST_COMPLETED)
            if self._latest[0] is not pairs:
                continue  # a newer set came meanwhile: that one is written
            self._latest = None
            await asyncio.to_thread(record.save, pairs)

    def unavailable_because(self, name: str) -> str:
        """Why the Caddy `name` has not answered yet (its last error), or ""."""
        return self._fleet.unavailable_because(name)
