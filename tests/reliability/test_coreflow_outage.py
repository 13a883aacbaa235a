"""Coreflow outage: the real TypedSocket peer dies, stays away for 30 s and comes back on the same port.

The full stack of tests/system/test_coreflow_end_to_end.py (CoreflowClient -> updateRouting handler -> reconciler -> a
real Caddy): routes keep serving through the whole outage (probed every ~0.5 s, every probe must succeed),
coretraffic is tagged again within 3 s of Coreflow's return, and the next update is applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest

from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA
from coretraffic.testing.upstream import DemoUpstream
from tests.support.canary import Canary
from tests.support.coreflow import OK, Peer, connected, update
from tests.support.dataplane import serves
from tests.support.ports import Ports

pytestmark = pytest.mark.timeout(120)

OUTAGE_S = 30.0
PROBE_EVERY_S = 0.5
RETAG_TARGET_S = 3.0


async def test_coreflow_away_30_s_routes_keep_serving_then_retagged_within_3_s(
    peers: Callable[..., Awaitable[Peer]],
    reconciler: Reconciler,
    ca: DemoCA,
    upstream: DemoUpstream,
    ports: Ports,
    canary: Canary,
) -> None:
    before = [
        canary.route(ca, "before.example.test", upstream.port),
        canary.route(ca, "auth.example.test", upstream.port, password="outage"),
    ]
    first = await peers()
    async with connected(first, reconciler) as client:
        replies = [await first.call("updateRouting", update(before))]
        assert replies[0] == OK
        await first.kill()  # abrupt: no goodbye, the kernel closes the socket
        gone = time.monotonic()

        # The outage: a probe every half second, each a new TLS connection; every one must be answered.
        probes: list[bool] = []
        while time.monotonic() - gone < OUTAGE_S:
            probes.append(await serves(ca, ports.https, "before.example.test"))
            await asyncio.sleep(PROBE_EVERY_S)  # the probe interval: a measurement, not a synchronisation
        reconnects_during_outage = client.reconnects

        second = await peers(first.port)  # returns once it listens
        returned = time.monotonic()
        await second.status(until_tagged=True, wait_s=15)
        retagged = time.monotonic() - returned

        after = [*before, canary.route(ca, "after.example.test", upstream.port)]
        replies.append(await second.call("updateRouting", update(after)))
    print(
        f"\nCoreflow outage {OUTAGE_S:.0f} s: {len(probes)} probes, {probes.count(False)} failed; "
        f"{reconnects_during_outage} reconnect attempts; re-tagged {retagged:.2f} s after its return"
    )
    assert all(probes), f"{probes.count(False)} of {len(probes)} probes failed during the outage"
    assert len(probes) >= OUTAGE_S / PROBE_EVERY_S / 2, "too few probes to cover the outage"
    assert reconnects_during_outage > 0, "the client never tried to reconnect during the outage"
    assert retagged < RETAG_TARGET_S, f"re-tagged {retagged:.2f} s after Coreflow returned (target {RETAG_TARGET_S} s)"
    assert replies[1] == OK
    assert await serves(ca, ports.https, "after.example.test")
    assert await serves(ca, ports.https, "before.example.test")
    canary.check(json.dumps(replies), "Coreflow replies")
