"""Caddy killed (`kill -9`) under load, both ways coretraffic can run it.

- Spawned and supervised: `CaddyProcess.supervise()` restarts it with `--resume`, so it comes back with the last
  config from its autosave; measured from the kill to the loaded route answering again.
- External (an operator's `caddy run` without `--resume`): it comes back empty and the reconciler's self-heal
  must notice and re-apply; measured from the moment its admin API answers again.

The no-load versions live in tests/caddy/test_reconciler.py; these add a client that never stops asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from benchmarks.harness import Bed, start_upstream
from coretraffic import __version__
from coretraffic.caddy.admin import AdminAddress, CaddyAdmin
from coretraffic.caddy.process import CaddyProcess, find_caddy_binary
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route
from coretraffic.errors import CaddyUnavailable
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA
from tests.support.caddy import validated
from tests.support.canary import Canary
from tests.support.dataplane import serves
from tests.support.load import LoadClient
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

LOAD_HOST = "load.example.test"
TARGET_S = 2.0


class ExternalCaddy:
    """A plain `caddy run` on a bootstrap config that only opens the admin API on a unix socket, with its XDG
    directories in `directory`: no `--resume`, so after a restart it serves nothing until it is configured."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700)
        self.directory = directory
        self.address = AdminAddress(f"unix/{directory / 'admin.sock'}")
        self._bootstrap = directory / "bootstrap.json"
        self._bootstrap.write_text(json.dumps({"admin": {"listen": self.address.listen}}))
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> float:
        """Start it; return the monotonic time at which its admin API first answered."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "admin.sock").unlink()  # left behind by a killed Caddy: it would refuse to listen
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.directory / "config"),
            "XDG_DATA_HOME": str(self.directory / "data"),
            "HOME": str(self.directory),
        }
        with (self.directory / "caddy.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(find_caddy_binary()), "run", "--config", str(self._bootstrap)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.directory,
            )
        admin = CaddyAdmin(self.address)

        async def answers() -> bool:
            try:
                await admin.ping()
            except CaddyUnavailable:
                return False
            return True

        try:
            await wait_until(answers, 30, "the external Caddy's admin API")
        finally:
            await admin.aclose()
        return time.monotonic()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
async def external(short_tmp: Path) -> AsyncIterator[ExternalCaddy]:
    caddy = ExternalCaddy(short_tmp / "external")
    await caddy.start()
    yield caddy
    caddy.stop()


@pytest.fixture
async def upstream_port(short_tmp: Path) -> AsyncIterator[int]:
    process, (port,) = await start_upstream(short_tmp / "upstream", listeners=1)
    yield port
    await process.stop()


async def test_spawned_caddy_killed_under_load_serves_the_last_config_within_2_s(
    bed: Bed, bed_reconciler: Reconciler, caddy: CaddyProcess, ca: DemoCA, canary: Canary
) -> None:
    configs = [
        canary.route(ca, LOAD_HOST, bed.upstream_port),
        canary.route(ca, "auth.example.test", bed.upstream_port, password="kill"),
    ]
    assert (await bed_reconciler.submit(validated(configs))).ok
    marker = bed_reconciler.applied_marker
    supervisor = asyncio.create_task(caddy.supervise())
    try:
        async with LoadClient(ca, bed.https_port, LOAD_HOST) as load:
            await load.answered(50)
            assert caddy.pid is not None
            os.kill(caddy.pid, signal.SIGKILL)
            # Measured from the kill: the supervisor's backoff, Caddy's start and its --resume all count.
            took = await wait_until(lambda: serves(ca, bed.https_port, LOAD_HOST), 15, "serving again after kill -9")
            back = time.monotonic()
            await load.answered(200)
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
    figures = load.figures
    print(
        f"\nspawned Caddy killed under load: serving again {took:.2f} s after kill -9; requests sent "
        f"{figures.sent}, failed {figures.failed} (all during the outage: {not figures.failed_since(back)}), "
        f"retried {figures.retried}"
    )
    assert took < TARGET_S, f"the spawned Caddy served again {took:.2f} s after kill -9 (target {TARGET_S} s)"
    assert figures.failed_since(back) == [], figures.summary()
    assert marker is not None and await bed.admin.has_id(marker), "Caddy came back with another config"
    assert caddy.restarts == 1


async def test_external_caddy_back_empty_under_load_is_healed_within_2_s(
    external: ExternalCaddy, upstream_port: int, ca: DemoCA, canary: Canary
) -> None:
    https_port = free_port()
    settings = RenderSettings(
        version=__version__,
        http_port=free_port(),
        https_port=https_port,
        listen_host="127.0.0.1",
    )
    hasher = BcryptHasher(cost=4)

    def renderer(routes: Sequence[Route]) -> JSON:
        return render(routes, settings, BaseConfig(), hasher)

    admin = CaddyAdmin(external.address)
    reconciler = Reconciler(admin, renderer)
    task = asyncio.create_task(reconciler.run())
    try:
        configs = [
            canary.route(ca, LOAD_HOST, upstream_port),
            canary.route(ca, "auth.example.test", upstream_port, password="heal"),
        ]
        assert (await reconciler.submit(validated(configs))).ok
        async with LoadClient(ca, https_port, LOAD_HOST) as load:
            await load.answered(50)
            external.kill()
            await wait_until(lambda: _fails(ca, https_port), 10, "the killed Caddy to stop serving")
            answering = await external.start()
            # Measured from the admin API answering: that is when the reconciler can first know it is empty.
            await wait_until(lambda: serves(ca, https_port, LOAD_HOST), 15, "the config re-applied")
            took = time.monotonic() - answering
            back = time.monotonic()
            await load.answered(200)
        heals = reconciler.heals
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await admin.aclose()
    figures = load.figures
    print(
        f"\nexternal Caddy killed under load, back empty: config re-applied {took:.2f} s after its admin API "
        f"answered ({heals} heals); requests sent {figures.sent}, failed {figures.failed} (during the outage), "
        f"retried {figures.retried}"
    )
    assert took < TARGET_S, f"re-applied {took:.2f} s after the empty Caddy answered (target {TARGET_S} s)"
    assert heals >= 1
    assert figures.failed_since(back) == [], figures.summary()


async def _fails(ca: DemoCA, port: int) -> bool:
    return not await serves(ca, port, LOAD_HOST)
