"""Reloads under load: 100 different route sets applied through the reconciler while a client keeps requesting
one route. Caddy reloads gracefully (in-flight requests finish) but closes idle keep-alive connections, so the
client retries an idempotent GET once when it loses that race; after that retry, no request may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.harness import Bed
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddyjson.layout import JSON
from coretraffic.core.validate import Route
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import validated
from tests.support.canary import Canary
from tests.support.load import LoadClient, LoadFigures

pytestmark = pytest.mark.timeout(180)

RELOADS = 100
LOAD_HOST = "load.example.test"


def route_sets(canary: Canary, ca: DemoCA, upstream_port: int, count: int) -> list[list[dict[str, Any]]]:
    """`count` sets, each different from the one before (so each is a real reload), all holding the loaded route.

    Sizes cycle through 5, 15, 25 and 35 extra hosts: across the 16-host line where the renderer switches from
    one route per host to host buckets, so reloads also change the layout under the client's feet.
    """
    pool = [canary.route(ca, f"r{i:03}.example.test", upstream_port) for i in range(120)]
    loaded = canary.route(ca, LOAD_HOST, upstream_port)
    sets = []
    for n in range(count):
        size = 5 + 10 * (n % 4)
        start = (n * 7) % (len(pool) - size)
        sets.append([loaded, *pool[start : start + size]])
    return sets


@dataclass(frozen=True)
class Run:
    reloads: int
    heals: int
    seconds: float
    figures: LoadFigures


async def reloads_under_load(bed: Bed, reconciler: Reconciler, ca: DemoCA, canary: Canary, count: int) -> Run:
    sets = route_sets(canary, ca, bed.upstream_port, count)
    first = await reconciler.submit(validated(sets[0]))
    assert first.outcome == "applied", first.summary()
    loads_before = reconciler.loads
    async with LoadClient(ca, bed.https_port, LOAD_HOST) as load:
        await load.answered(50)  # the connections are open and warm before the first reload
        started = time.monotonic()
        for configs in sets[1:] + sets[:1]:  # ... and back to the first: `count` changes in all
            result = await reconciler.submit(validated(configs))
            assert result.outcome == "applied", result.summary()
        seconds = time.monotonic() - started
        await load.answered(50)  # requests sent during the last reload have come back
    run = Run(reconciler.loads - loads_before, reconciler.heals, seconds, load.figures)
    figures = run.figures
    print(
        f"\nreloads under load: {run.reloads} reloads ({count} route sets, {run.heals} heals) in {seconds:.1f} s; "
        f"requests sent {figures.sent}, failed {figures.failed} ({figures.failed_fresh} on new connections), "
        f"retried {figures.retried} (keep-alive races), ok {figures.ok}"
    )
    # One load per set (each result above says "applied"), and no self-heal: nothing else touched Caddy.
    assert (run.reloads, run.heals) == (count, 0), f"{run.reloads} reloads, {run.heals} heals for {count} sets"
    # The load must really have overlapped the reloads, not only run before and after them.
    assert figures.ok >= 5 * count, f"too little load to prove anything: {figures.summary()}"
    return run


async def test_100_reloads_under_load_lose_no_request_on_a_kept_connection(
    bed: Bed, bed_reconciler: Reconciler, ca: DemoCA, canary: Canary
) -> None:
    """Every response is a 200 and no request on a kept connection fails after the one keep-alive retry.

    New connections are another matter: Caddy hands its listener over on a reload by opening a second socket
    with SO_REUSEPORT and closing the old one, and connections queued on the old one are dropped (measured on a
    plain Caddy with no coretraffic involved, HTTP and HTTPS alike). Those are counted and reported here (see
    RELIABILITY.md): they are how often a reload costs a brand-new connection, which no client retries.
    """
    run = await reloads_under_load(bed, bed_reconciler, ca, canary, RELOADS)
    kept = [f for f in run.figures.failures if not f.fresh]
    assert kept == [], run.figures.summary()


class SlowConfigReads(CaddyAdmin):
    """Caddy as it is with thousands of routes: reading the whole config back (for its ETag) takes a while.

    The delay is injected latency standing in for Caddy's work (74 ms and 11 MB at 10,000 routes, much more on a
    loaded box), not synchronisation: the test waits on the reconciler going idle.
    """

    async def config_etag(self) -> str:
        await asyncio.sleep(0.6)
        return await super().config_etag()


async def test_a_heal_check_during_an_apply_never_reverts_caddy_to_the_previous_set(
    admin: CaddyAdmin, renderer: Callable[[Sequence[Route]], JSON], ca: DemoCA, upstream: DemoUpstream
) -> None:
    slow = SlowConfigReads(admin.address)
    reconciler = Reconciler(slow, renderer, heal_interval=0.2)
    task = asyncio.create_task(reconciler.run())
    try:
        first = await reconciler.submit(validated([demo_route(ca, "first.example.test", upstream.port)]))
        assert first.outcome == "applied"
        second = await reconciler.submit(validated([demo_route(ca, "second.example.test", upstream.port)]))
        assert second.outcome == "applied"
        marker = reconciler.applied_marker
        # Nothing is pending once the second set is applied: the reconciler must go (and stay) idle. With the
        # race it re-applies the first set, then heals back, and so on for as long as reads stay slow.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reconciler.wait_idle(), 5)
        idle, heals = reconciler.applied_marker == marker, reconciler.heals
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await slow.aclose()
    assert marker is not None
    assert idle and await admin.has_id(marker), f"Caddy no longer runs the set it was last given ({heals} heals)"
    assert heals == 0, "Caddy was never changed behind the reconciler's back, yet it healed"
