"""Where route sets enter the loop, from any source: validated off the event loop, problems logged, handed to
the reconciler. The routes file and Coreflow both come through here, so they behave the same.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from coretraffic.core.validate import validate_route_set
from coretraffic.reconcile.reconciler import ApplyResult, Reconciler

log = logging.getLogger("coretraffic")


async def submit_route_set(reconciler: Reconciler, document: Any) -> asyncio.Future[ApplyResult]:
    """Validate a route set and queue it; the future resolves with the apply that covered it.

    Raises `RouteSetError` (and queues nothing) when the document as a whole is unusable.
    """
    now = datetime.datetime.now(datetime.UTC)
    # PEM parsing is CPU work: off the event loop, so heartbeats and health checks stay answered.
    validation = await asyncio.to_thread(validate_route_set, document, now)
    for problem in validation.problems:
        level = logging.WARNING if problem.severity == "warning" else logging.ERROR
        log.log(level, "route %s: %s", problem.severity, problem)
    return reconciler.submit_nowait(validation)
