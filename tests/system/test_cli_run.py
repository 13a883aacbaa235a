"""`coretraffic run --routes FILE` and `coretraffic demo` as an operator runs them: a real process, a real Caddy."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest

from coretraffic.app.demo import DEMO_HOSTS
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.dataplane import https_get, serves
from tests.support.driver import Driver, caddy_pids
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until


@pytest.fixture
def driver_args(driver_flags: list[str]) -> list[str]:
    return [*driver_flags, "--status-addr", f"127.0.0.1:{free_port()}"]  # not the default port: runs may overlap


@pytest.fixture
def routes_file(short_tmp: Path) -> Path:
    return short_tmp / "routes.json"


async def test_run_serves_good_routes_names_the_bad_one_and_follows_the_file(
    ca: DemoCA, upstream: DemoUpstream, routes_file: Path, driver_args: list[str], ports: Ports
) -> None:
    good = [demo_route(ca, f"good{i}.example.test", upstream.port) for i in range(3)]
    broken = demo_route(ca, "broken.example.test", upstream.port)
    broken["privateKey"] = demo_route(ca, "other.example.test", upstream.port)["privateKey"]
    routes_file.write_text(json.dumps({"reverseConfigs": [good[0], broken, *good[1:]]}))

    driver = Driver(["run", "--routes", str(routes_file), *driver_args])
    try:
        for host in ("good0.example.test", "good1.example.test", "good2.example.test"):
            await wait_until(partial(serves, ca, ports.https, host), 30, f"{host} served")
        assert "broken.example.test: privateKey: does not match the certificate" in driver.output
        assert "MII" not in driver.output  # no key or certificate body in the log

        # A changed file is applied; an invalid one keeps the last good config serving.
        routes_file.write_text(json.dumps([*good, demo_route(ca, "added.example.test", upstream.port)]))
        await wait_until(lambda: serves(ca, ports.https, "added.example.test"), 10, "the change applied")
        # The certificates it checked are kept for the next process (the broken pair is not among them).
        record = Path(driver_args[1]) / "checked-certificates.json"
        await wait_until(partial(holds_pairs, record, 4), 10, "the checked certificates kept")
        assert "PRIVATE KEY" not in record.read_text()
        routes_file.write_text("{ not json")
        await wait_until(lambda: driver.said("is not valid JSON (line 1, column 3)"), 10, "the bad file reported")
        assert await serves(ca, ports.https, "added.example.test")
        state_dir = driver_args[1]
        assert len(caddy_pids(state_dir)) == 1
    finally:
        assert driver.stop() == 0
    assert caddy_pids(state_dir) == []  # SIGTERM stopped the Caddy it started


async def holds_pairs(record: Path, count: int) -> bool:
    return record.exists() and len(json.loads(record.read_text())["pairs"]) == count


async def test_demo_command_serves_https_with_its_certificate(short_tmp: Path, ports: Ports) -> None:
    state_dir = short_tmp / "demo"
    driver = Driver(
        ["demo", "--state-dir", str(state_dir), "--listen-host", "127.0.0.1", "--status-addr", ""],
        env={"CORETRAFFIC_HTTP_PORT": str(ports.http), "CORETRAFFIC_HTTPS_PORT": str(ports.https)},
    )
    try:
        await wait_until(lambda: driver.said("coretraffic demo is serving"), 30, "the demo to start")
        assert f"--resolve {DEMO_HOSTS[0]}:{ports.https}:127.0.0.1" in driver.output
        ca_pem = (state_dir / "demo-ca.pem").read_text()
        response = await https_get(ca_pem, ports.https, DEMO_HOSTS[0])
        assert response.status_code == 200
        assert "servezone_coretraffic_version" in response.headers
        assert (await https_get(ca_pem, ports.https, DEMO_HOSTS[1], auth=("demo", "demo"))).status_code == 200
        async with httpx.AsyncClient() as client:
            redirect = await client.get(f"http://127.0.0.1:{ports.http}/x", headers={"Host": DEMO_HOSTS[0]})
        assert redirect.status_code == 301
    finally:
        assert driver.stop() == 0


def test_unusable_state_dir_is_a_clear_error(tmp_path: Path, routes_file: Path) -> None:
    routes_file.write_text("[]")
    blocker = tmp_path / "file"
    blocker.write_text("")
    completed = subprocess.run(
        [sys.executable, "-m", "coretraffic", "run", "--routes", str(routes_file), "--state-dir", str(blocker / "x")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"coretraffic: state directory {blocker / 'x'} is not usable")
    assert "Traceback" not in completed.stderr
