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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from coretraffic import __version__
from coretraffic.caddy_admin import CaddyAdmin
from coretraffic.caddy_process import CaddyProcess
from coretraffic.demo import DemoCA, DemoUpstream, demo_route
from coretraffic.passwords import BcryptHasher
from coretraffic.reconciler import Reconciler
from coretraffic.render import BaseConfig, RenderSettings, render, serialise
from coretraffic.validate import validate_route_set


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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until_serving(client: httpx.AsyncClient, port: int, host: str, deadline_s: float = 60) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        try:
            response = await client.get(
                f"https://127.0.0.1:{port}/", headers={"Host": host}, extensions={"sni_hostname": host}
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{host} did not answer within {deadline_s} s")


async def measure(size: int, repeats: int) -> Row:
    ca = DemoCA()
    upstream = DemoUpstream().start()
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        caddy = CaddyProcess(Path(tmp) / "state")
        await caddy.start()
        admin = CaddyAdmin(caddy.admin_address)
        https_port = _free_port()
        settings = RenderSettings(
            admin_listen=caddy.admin_address.listen,
            version=__version__,
            http_port=_free_port(),
            https_port=https_port,
            listen_host="127.0.0.1",
        )
        hasher = BcryptHasher(cost=4)
        reconciler = Reconciler(
            admin, lambda routes: render(routes, settings, BaseConfig(), hasher), heal_interval=3600
        )
        loop_task = asyncio.create_task(reconciler.run())
        client = httpx.AsyncClient(verify=False, timeout=5)
        try:
            shared: list[dict[str, Any]] = [
                demo_route(ca, f"h{i:05}.bench.test", upstream.port) for i in range(size - 1)
            ]
            now = datetime.datetime.now(datetime.UTC)
            await reconciler.submit(
                validate_route_set([*shared, demo_route(ca, "warm.bench.test", upstream.port)], now)
            )
            ours, raw = [], []
            for round_ in range(repeats):
                # Ours: a whole new document, as Coreflow sends it, with one new host.
                document = [*shared, demo_route(ca, f"ours{round_}.bench.test", upstream.port)]
                started = time.perf_counter()
                reconciler.submit_nowait(validate_route_set(document, datetime.datetime.now(datetime.UTC)))
                await _until_serving(client, https_port, f"ours{round_}.bench.test")
                ours.append(time.perf_counter() - started)
                await reconciler.wait_idle()

                # Raw: the same-sized config, rendered beforehand, posted straight to /load.
                raw_set = validate_route_set([*shared, demo_route(ca, f"raw{round_}.bench.test", upstream.port)], now)
                body = serialise(render(raw_set.routes, settings, BaseConfig(), hasher))
                started = time.perf_counter()
                await admin.load(body)
                await _until_serving(client, https_port, f"raw{round_}.bench.test")
                raw.append(time.perf_counter() - started)
            return Row(size, statistics.median(ours), statistics.median(raw))
        finally:
            await client.aclose()
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await admin.aclose()
            await caddy.stop()
            upstream.stop()
