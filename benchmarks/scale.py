"""Scale benchmarks: each returns ratios of two things measured side by side in one run.

- worst host vs a one-route config, HTTPS through Caddy, at N hosts (and the flat one-route-per-host layout);
- a basic-auth host vs an open one;
- Caddy's RSS after reloads under traffic vs its steady state;
- the driver's CPU for a changed 10,000-route set vs Caddy's `/load` of it, and the driver's RSS.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Bed, Load, free_port, h2load, hosts, rss_mb
from benchmarks.material import trust_bundle
from coretraffic.caddyjson.render import serialise
from coretraffic.core.validate import validate_route_set


@dataclass(frozen=True)
class Dispatch:
    routes: int
    one_route_rps: float
    worst_rps: float
    ratios: list[float]  # worst host / one-route rps, one per round
    flat_ratio: float | None
    own_ports_ratio: float | None  # every host on upstream ports no other host uses: the buckets map ports too

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


async def dispatch(bed: Bed, size: int, seconds: float, rounds: int, with_flat: bool) -> Dispatch:
    names = hosts(size)
    worst = max(names)  # last in every layout: one upstream each, buckets sorted by name
    one = bed.render(bed.routes(bed.configs(names[:1])))
    routes = bed.routes(bed.configs(names))
    layouts = {"ours": bed.render(routes)}
    if with_flat:
        layouts["flat"] = bed.render(routes, flat=True)
        # Only the worst host is asked for: the others' ports need no listener.
        spread = [
            {**config, "destinationPorts": [40_000 + i]} if config["hostName"] != worst else config
            for i, config in enumerate(bed.configs(names))
        ]
        layouts["own_ports"] = bed.render(bed.routes(spread))
    measured: dict[str, list[float]] = {"one": [], "ours": [], "flat": [], "own_ports": []}
    ratios: dict[str, list[float]] = {"ours": [], "flat": [], "own_ports": []}
    for _ in range(rounds):
        for name, config in layouts.items():
            # Each layout right after a one-route run: the ratio of a pair is immune to slow drift of the machine.
            await bed.load(one)
            measured["one"].append((await h2load(bed.https_port, names[0], seconds)).rps)
            await bed.load(config)
            measured[name].append((await h2load(bed.https_port, worst, seconds)).rps)
            ratios[name].append(measured[name][-1] / measured["one"][-1])
    flat = statistics.median(ratios["flat"]) if ratios["flat"] else None
    own_ports = statistics.median(ratios["own_ports"]) if ratios["own_ports"] else None
    one_rps, worst_rps = statistics.median(measured["one"]), statistics.median(measured["ours"])
    return Dispatch(size, one_rps, worst_rps, ratios["ours"], flat, own_ports)


async def auth_vs_open(bed: Bed, seconds: float, rounds: int) -> float:
    configs = bed.configs(["open.bench.test", "auth.bench.test"])
    configs[1] = {**configs[1], "authentication": {"type": "Basic", "user": "bench", "pass": "bench-password"}}
    await bed.load(bed.render(bed.routes(configs)))
    authed, opened = [], []
    for _ in range(rounds):
        opened.append((await h2load(bed.https_port, "open.bench.test", seconds)).rps)
        load = await h2load(bed.https_port, "auth.bench.test", seconds, auth="bench:bench-password")
        assert load.failed == 0, "authed requests were refused"
        authed.append(load.rps)
    return statistics.median(authed) / statistics.median(opened)


SETTLE_S = 10.0  # twice the upstream idle timeout: long enough for connections pinning old configs to close


@dataclass(frozen=True)
class Reloads:
    steady_mb: float
    right_after_mb: float
    settled_mb: float
    reloads: int
    requests: int
    failed: int
    hung: int

    @property
    def ratio(self) -> float:
        return self.settled_mb / self.steady_mb


async def reloads_under_traffic(bed: Bed, size: int, reloads: int) -> Reloads:
    names = hosts(size)
    target = names[0]
    configs = bed.configs(names)
    variants = [
        serialise(bed.render(bed.routes([*configs[:-1], *bed.configs([f"r{i:05}.bench.test"])])))
        for i in range(reloads)
    ]
    await bed.load(bed.render(bed.routes(configs)))
    await h2load(bed.https_port, target, 5)  # warm up: connections, pools, certificate cache
    steady = bed.caddy_rss_mb()
    stop = asyncio.Event()
    traffic = asyncio.create_task(traffic_until(bed, target, stop))
    for body in variants:
        await bed.admin.load(body)
    right_after = bed.caddy_rss_mb()
    await asyncio.sleep(SETTLE_S)  # traffic goes on over the final config: a measurement span, not a sync
    settled = bed.caddy_rss_mb()
    stop.set()
    load = await traffic
    return Reloads(steady, right_after, settled, reloads, load.requests, load.failed, load.hung)


async def traffic_until(bed: Bed, host: str, stop: asyncio.Event) -> Load:
    """Back-to-back one-second h2load runs: a reload closes keep-alive connections, and h2load does not reopen
    them within a run, so short runs keep the traffic up through a hundred reloads."""
    requests = failed = hung = 0
    while not stop.is_set():
        load = await h2load(bed.https_port, host, 1)
        requests, failed, hung = requests + load.requests, failed + load.failed, hung + load.hung
    return Load(0.0, requests, failed, hung)


@dataclass(frozen=True)
class DriverCost:
    driver_cpu_s: float
    caddy_load_s: float
    driver_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.driver_cpu_s / self.caddy_load_s


async def driver_cost(bed: Bed, size: int) -> DriverCost:
    names = hosts(size)
    configs = bed.configs(names)
    now = datetime.datetime.now(datetime.UTC)
    bed.render(validate_route_set(json.loads(json.dumps(configs)), now).routes)  # warm
    changed = json.loads(json.dumps([*configs[1:], *bed.configs(["changed.bench.test"])]))
    cpu = time.process_time()
    body = serialise(bed.render(validate_route_set(changed, now).routes))
    driver_cpu = time.process_time() - cpu
    started = time.perf_counter()
    await bed.admin.load(body)
    caddy_load = time.perf_counter() - started
    return DriverCost(driver_cpu, caddy_load, await _driver_rss_mb(bed, configs))


async def _driver_rss_mb(bed: Bed, configs: list[dict[str, object]]) -> float:
    """RSS of a real `coretraffic run --routes` process once it has applied the set."""
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        routes_file = Path(tmp) / "routes.json"
        routes_file.write_text(json.dumps(configs))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "coretraffic", "run", "--routes", str(routes_file),
            "--caddy-admin", bed.caddy.admin_address.listen, "--listen-host", "127.0.0.1",
            "--http-port", str(free_port()), "--https-port", str(free_port()),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            # No status server (its port may be taken) and a state directory of its own.
            env={**os.environ, "SSL_CERT_FILE": str(trust_bundle()), "CORETRAFFIC_LOG_LEVEL": "INFO",
                 "CORETRAFFIC_STATUS_ADDR": "",
                 "CORETRAFFIC_STATE_DIR": str(Path(tmp) / "state")},
        )  # fmt: skip
        assert process.stderr is not None
        try:
            async with asyncio.timeout(300):
                async for line in process.stderr:
                    if b"apply applied" in line or b"apply unchanged" in line:
                        break
            rss = rss_mb(process.pid)
        finally:
            process.terminate()
            await process.wait()
    return rss
