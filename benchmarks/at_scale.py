"""The driver and Caddy from 10,000 to 100,000 hosts: what grows, measured side by side per size.

For each size, one fresh Caddy (so its RSS is this size's) and, in this order:
- cold validation: a `coretraffic check --routes FILE` process, which validates on the machine's cores;
- cold start: a `coretraffic run --routes FILE` process started against that empty Caddy, from its start to a
  host answering HTTPS; then the driver's and Caddy's RSS; the driver is stopped, Caddy keeps the set; in rounds
  alternated with cold validation, Caddy emptied again before each;
- update-to-serving against raw `/load`, alternated: a set with one new host handed to a reconciler in this
  process (validation of the whole set, render, serialise, `/load`) until the new host answers, against a raw
  `POST /load` of a same-sized config rendered beforehand, polled the same way;
- the driver's CPU for a set with one host changed (validation, render, serialisation, in process CPU time);
- at the largest size, `coretraffic diff` of 30 changes against what Caddy runs, next to a bare read of
  `GET /config/`.
Then raw `/load`s of the smallest and the largest size alternated in one Caddy, and at the smallest size a raw
`/load` of RSA-only hosts alternated with one of EC hosts.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.diff_cli import left_by_run, time_config_read, time_diff
from benchmarks.harness import Bed, as_received, bed, hosts, rss_mb, until_serving
from benchmarks.material import trust_bundle
from coretraffic.caddyjson.render import serialise
from coretraffic.core.validate import validate_route_set
from coretraffic.reconcile.reconciler import Reconciler

# Caddy takes about a minute per `/load` of 100,000 hosts on a quiet machine; a busy one, several.
SERVING_DEADLINE_S = 900.0


@dataclass(frozen=True)
class Size:
    hosts: int
    cold_validation_s: list[float]  # `coretraffic check`, per round
    cold_start_s: list[float]  # `coretraffic run` to serving, per round, alternated with the checks
    driver_rss_mb: float  # the last cold start's
    caddy_rss_mb: float
    ours_s: list[float]  # update-to-serving, per round
    raw_s: list[float]  # raw `/load` to serving, per round
    raw_post_s: list[float]  # the raw `POST /load` alone, until Caddy answered
    driver_cpu_s: float

    @property
    def ours_median_s(self) -> float:
        return statistics.median(self.ours_s)

    @property
    def raw_median_s(self) -> float:
        return statistics.median(self.raw_s)

    @property
    def serving_ratio(self) -> float:
        # Of each round's pair: a round's two sides run back to back, while rounds drift with the machine's load.
        return statistics.median(o / r for o, r in zip(self.ours_s, self.raw_s, strict=True))

    @property
    def cpu_ratio(self) -> float:
        return self.driver_cpu_s / statistics.median(self.raw_post_s)

    @property
    def cold_start_allowance_s(self) -> float:
        return 1.5 * self.raw_median_s + statistics.median(self.cold_validation_s)

    @property
    def cold_start_ratio(self) -> float:
        return statistics.median(self.cold_start_s) / self.cold_start_allowance_s


@dataclass(frozen=True)
class Diff:
    hosts: int
    diff_s: float
    cold_s: float  # from an empty state directory: every certificate checked
    read_s: float
    summary: str


@dataclass(frozen=True)
class Growth:
    small: int
    large: int
    small_s: list[float]
    large_s: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.large_s) / statistics.median(self.small_s)


@dataclass(frozen=True)
class KeyTypes:
    hosts: int
    rsa_s: list[float]
    ec_s: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.rsa_s) / statistics.median(self.ec_s)


async def measure(size: int, rounds: int, cold_rounds: int, *, with_diff: bool) -> tuple[Size, Diff | None]:
    async with bed() as b, httpx.AsyncClient(verify=False, timeout=30) as client:
        configs = b.configs(hosts(size))
        with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
            routes_file = Path(tmp) / "routes.json"
            routes_file.write_text(json.dumps(configs))
            # Alternated, medians: one run of each on a shared machine moves by 2x. Before each cold start but the
            # first, Caddy is emptied again (a config of only its admin block).
            checks, starts = [], []
            for round_ in range(cold_rounds):
                if round_:
                    await b.admin.load(serialise({"admin": {"listen": b.caddy.admin_address.listen}}))
                checks.append(await _check(routes_file, Path(tmp) / f"check {round_}"))
                probe = configs[-1]["hostName"]
                seconds, driver_rss = await _cold_start(b, client, routes_file, probe, Path(tmp) / f"run {round_}")
                starts.append(seconds)
            caddy_rss = b.caddy_rss_mb()
            ours, raw, raw_post, cpu = await _updates(b, client, configs, rounds)
            running = [*configs[:-1], *b.configs([f"raw{rounds - 1}.bench.test"])]  # the last raw round's set
            diff = await _diff(b, running, Path(tmp)) if with_diff else None
        return Size(size, checks, starts, driver_rss, caddy_rss, ours, raw, raw_post, cpu), diff


async def raw_load_growth(small: int, large: int, rounds: int) -> Growth:
    """Raw `/load` of `small` hosts alternated with `large` hosts in one Caddy: the ratio of two sizes measured
    side by side, immune to the machine's load drifting between the per-size measurements."""
    async with bed() as b:
        bodies = {size: serialise(b.render(b.routes(b.configs(hosts(size))))) for size in (small, large)}
        timings = await b.timed_loads(bodies, rounds)
        return Growth(small, large, timings[small], timings[large])


async def rsa_against_ec(size: int, rounds: int) -> KeyTypes:
    """Raw `/load` of `size` RSA-only hosts against as many EC hosts, alternated, each set new to Caddy."""
    async with bed() as b:
        bodies = {
            kind: serialise(b.render(b.routes(b.configs(hosts(size, kind), key_type=kind)))) for kind in ("rsa", "ec")
        }
        timings = await b.timed_loads(bodies, rounds)
        return KeyTypes(size, timings["rsa"], timings["ec"])


def _driver_command(command: str, routes_file: Path, state_dir: Path, b: Bed | None = None) -> list[str]:
    """`coretraffic COMMAND --routes FILE --state-dir DIR`, driving the bed's Caddy on its ports when there is
    one. A new DIR each time: the checked certificates an earlier run left there would make the command warm."""
    drive = () if b is None else (
        "--caddy-admin", b.caddy.admin_address.listen, "--listen-host", "127.0.0.1",
        "--http-port", str(b.settings.http_port), "--https-port", str(b.https_port),
    )  # fmt: skip
    return [
        sys.executable,
        "-m",
        "coretraffic",
        command,
        "--routes",
        str(routes_file),
        "--state-dir",
        str(state_dir),
        *drive,
    ]


def _clean_env(**extra: str) -> dict[str, str]:
    """The benchmark's environment for a driver: no `CORETRAFFIC_*` of its own; trusting the bench CA."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")}
    return {**clean, "SSL_CERT_FILE": str(trust_bundle()), **extra}


async def _check(routes_file: Path, state_dir: Path) -> float:
    """Wall time of `coretraffic check`: a cold process validating the file on the machine's cores."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *_driver_command("check", routes_file, state_dir), stdout=asyncio.subprocess.DEVNULL, env=_clean_env()
    )
    if await process.wait() != 0:
        raise RuntimeError(f"coretraffic check exited {process.returncode}")
    return time.perf_counter() - started


async def _cold_start(
    b: Bed, client: httpx.AsyncClient, routes_file: Path, probe: str, state_dir: Path
) -> tuple[float, float]:
    """From starting `coretraffic run --routes` against the empty Caddy to `probe` answering; the driver's RSS."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *_driver_command("run", routes_file, state_dir, b),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=_clean_env(CORETRAFFIC_STATUS_ADDR=""),
    )
    try:
        await until_serving(client, b.https_port, probe, SERVING_DEADLINE_S)
        seconds = time.perf_counter() - started
        rss = rss_mb(process.pid)
    finally:
        process.terminate()
        await process.wait()
    return seconds, rss


async def _updates(
    b: Bed, client: httpx.AsyncClient, configs: Sequence[dict[str, Any]], rounds: int
) -> tuple[list[float], list[float], list[float], float]:
    """Update-to-serving and raw `/load` alternated, and the driver's CPU for a set with one host changed."""
    shared = list(configs[:-1])
    reconciler = Reconciler(b.admin, b.render, heal_interval=3600)
    loop_task = asyncio.create_task(reconciler.run())
    now = datetime.datetime.now(datetime.UTC)
    try:
        await reconciler.submit(validate_route_set(as_received([*shared, *b.configs(["warm.bench.test"])]), now))
        changed = as_received([*shared, *b.configs(["changed.bench.test"])])
        cpu = time.process_time()
        routes = validate_route_set(changed, datetime.datetime.now(datetime.UTC)).routes
        gc.disable()  # as the reconciler renders (`Reconciler._render_and_serialise`)
        try:
            serialise(b.render(routes))
        finally:
            gc.enable()
        driver_cpu = time.process_time() - cpu
        ours, raw, raw_post = [], [], []
        for round_ in range(rounds):
            document = as_received([*shared, *b.configs([f"ours{round_}.bench.test"])])
            started = time.perf_counter()
            reconciler.submit_nowait(validate_route_set(document, datetime.datetime.now(datetime.UTC)))
            await until_serving(client, b.https_port, f"ours{round_}.bench.test", SERVING_DEADLINE_S)
            ours.append(time.perf_counter() - started)
            await reconciler.wait_idle()

            body = serialise(b.render(b.routes([*shared, *b.configs([f"raw{round_}.bench.test"])])))
            started = time.perf_counter()
            serving = asyncio.create_task(
                until_serving(client, b.https_port, f"raw{round_}.bench.test", SERVING_DEADLINE_S)
            )
            await b.admin.load(body)
            raw_post.append(time.perf_counter() - started)
            await serving
            raw.append(time.perf_counter() - started)
        return ours, raw, raw_post, driver_cpu
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)


async def _diff(b: Bed, configs: Sequence[dict[str, Any]], tmp: Path) -> Diff:
    """`coretraffic diff` of 30 changes to the running `configs`, beside the driver's state directory and from an
    empty one, and a bare read of the running config."""
    desired: list[Any] = as_received(list(configs))
    for config in desired[:10]:
        config["destinationPorts"] = [b.upstream_port + 1]
    del desired[10:20]
    desired += b.configs(hosts(10, prefix="new"))
    routes_file = tmp / "desired.json"
    routes_file.write_text(json.dumps(desired))
    cold_s, _ = await time_diff(b, routes_file, tmp / "empty state")
    seconds, summary = await time_diff(b, routes_file, left_by_run(configs, tmp / "state"))
    return Diff(len(configs), seconds, cold_s, await time_config_read(b.caddy.admin_address), summary)
