"""A host with one of its three upstreams dead against the same host with all three live: retries and
passive health should make the dead one cost nothing. Measured side by side in one run, both layouts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from benchmarks.harness import Bed, free_port, h2load
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.render import render, with_admin_listen

LIVE, ONE_DEAD = "live.bench.test", "one-dead.bench.test"


@dataclass(frozen=True)
class DeadUpstream:
    layout: str
    ratios: list[float]  # one-dead / all-live rps, one per round
    failed: int  # requests to the one-dead host without a 2xx answer, all rounds
    requests: int

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


async def one_of_three_dead(bed: Bed, seconds: float, rounds: int) -> list[DeadUpstream]:
    dead = free_port()
    live, one_dead = bed.configs([LIVE, ONE_DEAD])
    configs = [
        {**live, "destinationPorts": bed.upstream_ports},
        {**one_dead, "destinationPorts": [*bed.upstream_ports[:2], dead]},
    ]
    routes = bed.routes(configs)
    results = []
    for layout, settings in (("flat", bed.settings), ("bucketed", replace(bed.settings, flat_max=0))):
        config = with_admin_listen(render(routes, settings, BaseConfig(), bed.hasher), bed.caddy.admin_address.listen)
        await bed.load(config)
        ratios, failed, requests = [], 0, 0
        for _ in range(rounds):
            all_live = await h2load(bed.https_port, LIVE, seconds)
            with_dead = await h2load(bed.https_port, ONE_DEAD, seconds)
            ratios.append(with_dead.rps / all_live.rps)
            failed += with_dead.failed + with_dead.hung
            requests += with_dead.requests
        results.append(DeadUpstream(layout, ratios, failed, requests))
    return results
