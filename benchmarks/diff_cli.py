"""`coretraffic diff` at scale (10,000 routes in under 2 s), next to the least any diff must pay.

Caddy runs N routes loaded through the real renderer; the routes file moves 10 hosts' upstreams, removes 10 hosts
and adds 10. "Ours" is the command as an operator runs it: a new Python process from start to exit that reads
and validates the file, renders, reads `GET /config/`, plans and prints. "Floor", alternated with it, is a new
Python process that only fetches and parses `GET /config/` (httpx and orjson): what reading the running Caddy
costs before any comparison. Each run of ours finds in its state directory what `run` leaves there after applying
the running set (its checked certificates, `sources.checked_pairs_file`), as it would beside a running driver.
Then the same command once against an empty Caddy, where every host is added, from an empty state directory.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Bed, hosts
from benchmarks.material import trust_bundle
from coretraffic.core.validate import checked_pairs, validate_route_set
from coretraffic.settings import AdminAddress
from coretraffic.sources.checked_pairs_file import FILE_NAME, CheckedPairsFile

# A bare reader of the running config: the floor. argv: the admin socket ("" for TCP), the admin URL.
_FLOOR = """
import sys, httpx, orjson
uds, url = sys.argv[1], sys.argv[2]
with httpx.Client(transport=httpx.HTTPTransport(uds=uds or None, verify=False)) as client:
    orjson.loads(client.get(url + "/config/").raise_for_status().content)
"""


@dataclass(frozen=True)
class DiffTime:
    routes: int
    ours_s: list[float]
    floor_s: list[float]
    all_added_s: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.ours_s)

    @property
    def floor_median_s(self) -> float:
        return statistics.median(self.floor_s)

    @property
    def ratio(self) -> float:
        return self.median_s / self.floor_median_s


async def measure(bed: Bed, size: int, repeats: int) -> DiffTime:
    configs = bed.configs(hosts(size))
    desired: list[Any] = json.loads(json.dumps(configs))
    for config in desired[:10]:
        config["destinationPorts"] = [bed.upstream_port + 1]
    del desired[10:20]
    desired += bed.configs(hosts(10, prefix="new"))
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        routes_file = Path(tmp) / "routes.json"
        routes_file.write_text(json.dumps(desired))
        all_added_s, _ = await time_diff(bed, routes_file, Path(tmp) / "empty")  # the bed's Caddy runs nothing yet
        await bed.load(bed.render(bed.routes(configs)))
        state_dir = left_by_run(configs, Path(tmp) / "state")
        ours, floor = [], []
        for _ in range(repeats):
            seconds, summary = await time_diff(bed, routes_file, state_dir)
            assert summary == f"10 added, 10 removed, 10 changed, 0 rejected, {size - 20} unchanged", summary
            ours.append(seconds)
            floor.append(await time_config_read(bed.caddy.admin_address))
    return DiffTime(size, ours, floor, all_added_s)


def left_by_run(configs: Sequence[Any], state_dir: Path) -> Path:
    """`state_dir` holding what `coretraffic run` leaves there once it has applied `configs`: its record of the
    certificates it checked (written here by the same code, without a second driver beside the bed's)."""
    validate_route_set(configs, datetime.datetime.now(datetime.UTC))
    CheckedPairsFile(state_dir / FILE_NAME).save(checked_pairs())
    return state_dir


async def time_diff(bed: Bed, routes_file: Path, state_dir: Path) -> tuple[float, str]:
    """Wall time of one `coretraffic diff` process with `state_dir`, and its summary line."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coretraffic", "diff", "--routes", str(routes_file), "--state-dir", str(state_dir),
        "--caddy-admin", bed.caddy.admin_address.listen, "--listen-host", "127.0.0.1",
        "--http-port", str(bed.settings.http_port), "--https-port", str(bed.https_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_clean_env(),
    )  # fmt: skip
    out, err = await process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 1:  # 1: changes found, as there are
        raise RuntimeError(f"coretraffic diff exited {process.returncode}: {err.decode()[-2000:]}")
    return seconds, out.decode().splitlines()[-1]


async def time_config_read(address: AdminAddress) -> float:
    started = time.perf_counter()
    url = "http://localhost" if address.kind == "unix" else f"http://{address.location}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOOR, address.location if address.kind == "unix" else "", url, env=_clean_env()
    )
    if await process.wait() != 0:
        raise RuntimeError("the floor process failed")
    return time.perf_counter() - started


def _clean_env() -> dict[str, str]:
    """No `CORETRAFFIC_*` of the benchmark's own; the bench CA trusted, as `run` trusts it (`material`)."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("CORETRAFFIC_")}
    return {**clean, "SSL_CERT_FILE": str(trust_bundle())}
