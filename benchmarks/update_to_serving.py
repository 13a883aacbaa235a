"""Update-to-serving: from a route set handed to coretraffic to its new host answering over HTTPS, against a raw
`POST /load` of the same-sized JSON to the same Caddy, alternated in one run.

"Ours" includes everything the driver does for a Coreflow update: validate the whole set (PEM checks cached),
render, serialise, skip-unchanged check, `/load`. "Raw" is only the `/load` of bytes rendered beforehand. Both
end when a real HTTPS request to the set's new host gets a 200.
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import time
from dataclasses import dataclass

import httpx

from benchmarks.harness import as_received, bed, hosts, until_serving
from coretraffic.caddyjson.render import serialise
from coretraffic.core.validate import validate_route_set
from coretraffic.reconcile.reconciler import Reconciler


@dataclass
class Row:
    routes: int
    ours_s: float
    raw_s: float

    @property
    def ratio(self) -> float:
        return self.ours_s / self.raw_s

    @property
    def overhead_ms(self) -> float:
        return (self.ours_s - self.raw_s) * 1000


async def measure(size: int, repeats: int) -> Row:
    async with bed() as b:
        shared = b.configs(hosts(size - 1))
        reconciler = Reconciler(b.admin, b.render, heal_interval=3600)
        loop_task = asyncio.create_task(reconciler.run())
        client = httpx.AsyncClient(verify=False, timeout=5)
        now = datetime.datetime.now(datetime.UTC)
        try:
            await reconciler.submit(validate_route_set(as_received([*shared, *b.configs(["warm.bench.test"])]), now))
            ours, raw = [], []
            for round_ in range(repeats):
                # Ours: a whole new document, as Coreflow sends it, with one new host.
                document = as_received([*shared, *b.configs([f"ours{round_}.bench.test"])])
                started = time.perf_counter()
                reconciler.submit_nowait(validate_route_set(document, datetime.datetime.now(datetime.UTC)))
                await until_serving(client, b.https_port, f"ours{round_}.bench.test")
                ours.append(time.perf_counter() - started)
                await reconciler.wait_idle()

                # Raw: the same-sized config, rendered beforehand, posted straight to /load.
                raw_routes = b.routes([*shared, *b.configs([f"raw{round_}.bench.test"])])
                body = serialise(b.render(raw_routes))
                started = time.perf_counter()
                # Polled while the load runs, exactly as on our side: the probes cost Caddy the same on both.
                serving = asyncio.create_task(until_serving(client, b.https_port, f"raw{round_}.bench.test"))
                await b.admin.load(body)
                await serving
                raw.append(time.perf_counter() - started)
            return Row(size, statistics.median(ours), statistics.median(raw))
        finally:
            await client.aclose()
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
