"""The `updateRouting` handler: Coreflow's route set in, the truth about its apply out.

Sits between the Coreflow session and the reconciler. The reply is `{status, errorText}`: `ok` with an empty
text when every host is served; `error` naming each rejected host, field and reason (never a secret)
otherwise. Caddy being unreachable does not hold Coreflow for ever: after a bounded wait the reply says the set
is accepted and will be applied when Caddy answers (the reconciler keeps retrying).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from coretraffic.core.text import counted
from coretraffic.errors import RouteSetError
from coretraffic.reconcile.reconciler import ApplyResult, Reconciler
from coretraffic.sources.coreflow.session import RoutingHandler
from coretraffic.sources.intake import submit_route_set

log = logging.getLogger("coretraffic.coreflow")

REPLY_DEADLINE_S = 10.0
_MAX_LISTED = 200  # problems spelled out in one reply; the rest are counted


def ok() -> dict[str, Any]:
    return {"status": "ok", "errorText": ""}


def error(text: str) -> dict[str, Any]:
    return {"status": "error", "errorText": text}


def reply_for(result: ApplyResult) -> dict[str, Any]:
    if result.ok:
        return ok()
    served = len(result.applied_hosts)
    if result.outcome == "failed":
        head = f"Caddy rejected the route set: {result.caddy_answer}; the previous config keeps serving"
    else:
        head = f"{counted(served, 'host')} served, {len({p.host for p in result.rejected})} rejected"
    listed = [str(p) for p in result.rejected[:_MAX_LISTED]]
    more = len(result.rejected) - len(listed)
    return error("; ".join([head, *listed, *([f"... and {more} more problems"] if more > 0 else [])]))


def make_update_routing_handler(reconciler: Reconciler, deadline_s: float = REPLY_DEADLINE_S) -> RoutingHandler:
    async def handle_update_routing(request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return error(f"malformed updateRouting request: expected an object, got {type(request).__name__}")
        try:
            applied = await submit_route_set(reconciler, request)
        except RouteSetError as exc:
            return error(f"malformed updateRouting request: {exc}; nothing was changed")
        try:
            # shield: a timed-out reply must not cancel the apply, which goes on retrying.
            return reply_for(await asyncio.wait_for(asyncio.shield(applied), deadline_s))
        except TimeoutError:
            return error(
                f"route set accepted but not applied yet: Caddy did not answer within {deadline_s:.0f} s; "
                "it will be applied as soon as Caddy answers"
            )

    return handle_update_routing
