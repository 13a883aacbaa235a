"""The `updateRouting` handler: Coreflow's route set in, the truth about its apply out.

Sits between the Coreflow session and the fleet of Caddies. The reply is `{status, errorText}`: `ok` with an
empty text when every Caddy serves every host; `error` otherwise, naming each rejected host, field and reason
(never a secret) and, with several Caddies, which Caddies do not serve the set and why. A Caddy being
unreachable does not hold Coreflow for ever: after a bounded wait the reply says the set is accepted and will be
applied when that Caddy answers (its reconciler keeps retrying); the others' answers are in the same reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from coretraffic.core.text import counted
from coretraffic.errors import RouteSetError, RouteSetHeldBack
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.sources.coreflow.session import RoutingHandler
from coretraffic.sources.intake import Intake

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
        if result.stale:
            shown = ", ".join(result.stale[:_MAX_LISTED])
            head += f" ({len(result.stale)} of them stale, serving their last good version: {shown})"
        if result.held_back:
            head += f"; {result.held_back}"
    listed = [str(p) for p in result.rejected[:_MAX_LISTED]]
    more = len(result.rejected) - len(listed)
    return error("; ".join([head, *listed, *([f"... and {more} more problems"] if more > 0 else [])]))


def fleet_reply(
    results: Mapping[str, ApplyResult | None], waiting_because: Mapping[str, str], deadline_s: float
) -> dict[str, Any]:
    """The reply for a set given to every Caddy in `results` (None: no answer within the deadline).

    One Caddy: the reply is that Caddy's. Several: `ok` only when all serve every host; otherwise the Caddies
    that do not, grouped by what their answer says, so a host rejected everywhere is listed once.
    """
    if not results:
        return error("no Caddy to apply the route set to (none found yet); it is applied to each as it appears")
    texts = {name: _problem(result, waiting_because.get(name, ""), deadline_s) for name, result in results.items()}
    if len(texts) == 1:
        (text,) = texts.values()
        return error(text) if text else ok()
    failing = {name: text for name, text in texts.items() if text}
    if not failing:
        return ok()
    grouped: dict[str, list[str]] = {}
    for name, text in sorted(failing.items()):
        grouped.setdefault(text, []).append(name)
    head = f"{len(failing)} of {counted(len(results), 'Caddy', 'Caddies')} do not serve the whole set"
    return error("; ".join([head, *(f"[{', '.join(names)}] {text}" for text, names in grouped.items())]))


def _problem(result: ApplyResult | None, waiting_because: str, deadline_s: float) -> str:
    if result is not None:
        return "" if result.ok else str(reply_for(result)["errorText"])
    why = f" ({waiting_because})" if waiting_because else ""
    return (
        f"route set accepted but not applied yet: Caddy did not answer within {deadline_s:.0f} s{why}; "
        "it will be applied as soon as Caddy answers"
    )


def make_update_routing_handler(intake: Intake, deadline_s: float = REPLY_DEADLINE_S) -> RoutingHandler:
    async def handle_update_routing(request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return error(f"malformed updateRouting request: expected an object, got {type(request).__name__}")
        try:
            submitted = await intake.submit(request)
        except RouteSetError as exc:
            return error(f"malformed updateRouting request: {exc}; nothing was changed")
        except RouteSetHeldBack as exc:
            return error(str(exc))
        # shield: a timed-out reply must not cancel an apply, which goes on retrying.
        waits = {name: asyncio.shield(future) for name, future in submitted.items()}
        if waits:
            await asyncio.wait(waits.values(), timeout=deadline_s)
        results = {name: wait.result() if wait.done() else None for name, wait in waits.items()}
        for wait in waits.values():
            if not wait.done():
                wait.cancel()  # the shield only: the apply inside goes on
        return fleet_reply(results, {name: intake.unavailable_because(name) for name in results}, deadline_s)

    return handle_update_routing
