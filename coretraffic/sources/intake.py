"""Where route sets enter the loop, from any source: validated off the event loop, problems logged, handed to
the reconciler. The routes file and Coreflow both come through here, so they behave the same.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from coretraffic.reconcile.reconciler import ApplyResult, Reconciler
from coretraffic.sources.parallel import validate_on_cores

log = logging.getLogger("coretraffic")


async def submit_route_set(reconciler: Reconciler, document: Any) -> asyncio.Future[ApplyResult]:
    """Validate a route set and queue it; the future resolves with the apply that covered it.

    Raises `RouteSetError` (and queues nothing) when the document as a whole is unusable.
    """
    now = datetime.datetime.now(datetime.UTC)
    # PEM parsing is CPU work: off the event loop (in a thread, or in forked workers for a mostly new set), so
    # heartbeats and health checks stay answered.
    validation = await validate_on_cores(document, now)
    for problem in validation.problems:
        level = logging.WARNING if problem.severity == "warning" else logging.ERROR
        log.log(level, "route %s: %s", problem.severity, problem)
    return reconciler.submit_nowait(validation)
