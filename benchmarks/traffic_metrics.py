"""What Caddy's request metrics cost (`--traffic-metrics`): requests/s with `per_host` against `off` on the same
Caddy at 1,000 hosts, the `/load` time of a 10,000-host set with and without them, and the series one host's
traffic adds.

Each pair is measured alternately, round after round, so that the machine's load drifting during the run weighs
on both alike; the ratio is of the medians.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import Bed, free_port, h2load, hosts
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import serialise
from coretraffic.caddyjson.traffic import TrafficMetrics, TrafficSettings


@dataclass(frozen=True)
class Throughput:
    hosts: int
    per_host_rps: list[float]
    off_rps: list[float]
    series_per_host: int  # series with this host's label after its traffic
    codes: tuple[str, ...]  # the status codes among them (h2load cuts its last requests off: those count too)

    @property
    def ratio(self) -> float:
        return statistics.median(self.per_host_rps) / statistics.median(self.off_rps)


@dataclass(frozen=True)
class LoadTimes:
    hosts: int
    per_host_s: list[float]
    off_s: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.per_host_s) / statistics.median(self.off_s)


def _render(bed: Bed, names: list[str], metrics: TrafficMetrics, metrics_port: int) -> JSON:
    traffic = TrafficSettings(metrics=metrics, metrics_listen=f"127.0.0.1:{metrics_port}")
    settings = bed.settings
    try:
        bed.settings = replace(settings, traffic=traffic)
        return bed.render(bed.routes(bed.configs(names)))
    finally:
        bed.settings = settings


async def per_host_against_off(bed: Bed, size: int, seconds: float, rounds: int) -> Throughput:
    """h2load on the middle host of `size`, with per-host metrics and without, alternated."""
    names = hosts(size)
    target = names[size // 2]
    metrics_port = free_port()
    configs = {mode: _render(bed, names, mode, metrics_port) for mode in ("per_host", "off")}
    rps: dict[str, list[float]] = {"per_host": [], "off": []}
    series = 0
    codes: tuple[str, ...] = ()
    for _ in range(rounds):
        for mode, config in configs.items():
            await bed.load(config)
            await h2load(bed.https_port, target, 1)  # warm up: connections, the new config's pools
            load = await h2load(bed.https_port, target, seconds)
            assert load.failed == 0, f"{load.failed} requests failed with metrics {mode}"
            rps[mode].append(load.rps)
            if mode == "per_host":
                series, codes = await _series_of(metrics_port, target)
    return Throughput(size, rps["per_host"], rps["off"], series, codes)


async def _series_of(metrics_port: int, host: str) -> tuple[int, tuple[str, ...]]:
    """The series labelled with `host` (h2load sends it with the port: one label value) and their status codes."""
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("host", "").split(":")[0] == host
    ]
    return len(samples), tuple(sorted({s.labels["code"] for s in samples if "code" in s.labels}))


async def load_time_with_and_without(bed: Bed, size: int, rounds: int) -> LoadTimes:
    """`POST /load` of `size` hosts with per-host metrics (and their listener) and without, alternated; each body
    differs from the running config, so that every load is a real one."""
    names = hosts(size)
    metrics_port = free_port()
    bodies = {mode: serialise(_render(bed, names, mode, metrics_port)) for mode in ("per_host", "off")}
    timings = await bed.timed_loads(bodies, rounds)
    return LoadTimes(size, timings["per_host"], timings["off"])
