"""Driving several Caddies: what a fleet costs the driver, and how long a set takes to reach every Caddy.

Three spawned Caddies beside the bed's own (each with its own state directory and admin socket; their data
planes share the HTTPS port, which Caddy binds with SO_REUSEPORT). Alternated in one run:

- driver CPU per update: this process's CPU time (every thread: validation, the render in worker threads,
  serialising, the HTTP clients) from a changed set handed to a `Fleet` until every Caddy's apply is answered,
  with three Caddies and with one. The set is validated and rendered once for all (`RenderOnce`, checked:
  one render per set); each Caddy still costs its own serialisation (with its admin block), the send of the
  body and the read of its config's ETag after the load (the baseline its hand-edit check compares with).
- set to all serving: wall time from the same hand-over until all three Caddies answered their `/load`, against
  one raw `POST /load` of the same-sized body to one Caddy. On 2 cores the three Caddies load at the same time on
  the same cores, so this is about the CPU they share, not about the driver.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Bed, hosts
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.render import serialise
from coretraffic.core.validate import validate_route_set
from coretraffic.reconcile.fleet import Fleet
from coretraffic.reconcile.render_once import RenderOnce
from coretraffic.reconcile.target import CaddyTarget

CADDIES = 3


@dataclass
class Row:
    routes: int
    renders_per_set: float
    cpu_three_s: float
    cpu_one_s: float
    all_serving_s: float
    raw_load_s: float

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_three_s / self.cpu_one_s

    @property
    def serving_ratio(self) -> float:
        return self.all_serving_s / self.raw_load_s


@asynccontextmanager
async def _caddies(count: int) -> AsyncIterator[list[CaddyAdmin]]:
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ct-bench-fleet-")))
        admins = []
        for i in range(count):
            caddy = CaddyProcess(tmp / f"caddy{i}")
            await caddy.start()
            stack.push_async_callback(caddy.stop)
            admin = CaddyAdmin(caddy.admin_address)
            stack.push_async_callback(admin.aclose)
            admins.append(admin)
        yield admins


def _fleet(admins: Sequence[CaddyAdmin], bed: Bed) -> tuple[Fleet, RenderOnce]:
    render = RenderOnce(lambda routes: bed.render(routes))
    # Self-heal off: its checks are not part of an update.
    return Fleet(CaddyTarget(admin, render, heal_interval=3600) for admin in admins), render


async def _update(fleet: Fleet, document: Any) -> tuple[float, float]:
    """CPU and wall seconds from a new document to every Caddy's answer."""
    cpu, wall = time.process_time(), time.perf_counter()
    validation = await asyncio.to_thread(validate_route_set, document, datetime.datetime.now(datetime.UTC))
    results = await asyncio.gather(*fleet.submit_nowait(validation).values())
    assert all(result.outcome == "applied" for result in results), [r.summary() for r in results]
    return time.process_time() - cpu, time.perf_counter() - wall


async def measure(bed: Bed, size: int, repeats: int) -> Row:
    shared = bed.configs(hosts(size - 1))

    def document(host: str) -> Any:
        return json.loads(json.dumps([*shared, *bed.configs([host])]))  # fresh objects, as a message parses

    async with _caddies(CADDIES) as admins:
        (three, renders), (one, _) = _fleet(admins, bed), _fleet(admins[:1], bed)
        runs = [asyncio.create_task(fleet.run()) for fleet in (three, one)]
        try:
            await _update(three, document("warm.bench.test"))
            renders_before = renders.renders
            cpu_three, cpu_one, all_serving, raw = [], [], [], []
            for round_ in range(repeats):
                cpu, wall = await _update(three, document(f"three{round_}.bench.test"))
                cpu_three.append(cpu)
                all_serving.append(wall)
                cpu, _ = await _update(one, document(f"one{round_}.bench.test"))
                cpu_one.append(cpu)
                body = serialise(bed.render(bed.routes([*shared, *bed.configs([f"raw{round_}.bench.test"])])))
                started = time.perf_counter()
                await bed.admin.load(body)
                raw.append(time.perf_counter() - started)
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
    return Row(
        size,
        (renders.renders - renders_before) / repeats,
        statistics.median(cpu_three),
        statistics.median(cpu_one),
        statistics.median(all_serving),
        statistics.median(raw),
    )
