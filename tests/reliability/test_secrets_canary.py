"""The secrets canary on everything a person reads: `coretraffic render` (without --show-secrets), `check`, `diff`
(plain, --full, --json) against a real Caddy, and a real driver at DEBUG through a Caddy kill and hostile files,
with its `/status` and `/metrics`.

The other tests of this directory search their DEBUG logs and Coreflow replies too (conftest `debug_log`); this
file covers the commands and the status server. The canary routes carry a marker in every private key and
password; the body lines of every PEM and any bcrypt hash count as leaks as well.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from coretraffic.caddy.process import CaddyProcess
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import validated
from tests.support.canary import Canary
from tests.support.dataplane import https_get, serves
from tests.support.driver import Driver, caddy_pids, ready, status_pages
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def canary_set(canary: Canary, ca: DemoCA, upstream_port: int) -> list[dict[str, Any]]:
    """Two good hosts (one with basic auth) and four broken ones, every secret field carrying the canary."""
    good = canary.route(ca, "good.example.test", upstream_port, password="pass")
    plain = canary.route(ca, "plain.example.test", upstream_port)
    mismatch = canary.route(ca, "mismatch.example.test", upstream_port)
    mismatch["privateKey"] = plain["privateKey"]
    garbage = canary.route(ca, "garbage.example.test", upstream_port)
    garbage["privateKey"] = canary.key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    badauth = canary.route(ca, "badauth.example.test", upstream_port)
    badauth["authentication"] = {"type": "Basic", "user": "a:b", "pass": canary.password("x")}
    long_pass = canary.route(ca, "longpass.example.test", upstream_port)
    long_pass["authentication"] = {"type": "Basic", "user": "bob", "pass": canary.password("p" * 80)}
    return [good, plain, mismatch, garbage, badauth, long_pass]


def command(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")}
    return subprocess.run(
        [sys.executable, "-m", "coretraffic", *args], capture_output=True, text=True, timeout=60, env=env
    )


async def test_render_check_and_diff_show_no_secret(
    caddy: CaddyProcess,
    reconciler: Reconciler,
    ca: DemoCA,
    upstream: DemoUpstream,
    ports: Ports,
    canary: Canary,
    tmp_path: Path,
) -> None:
    configs = canary_set(canary, ca, upstream.port)
    assert (await reconciler.submit(validated(configs[:2]))).outcome == "applied"  # diff has something to compare
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(configs))
    settings = [
        "--routes", str(routes),
        "--caddy-admin", caddy.admin_address.listen,
        "--http-port", str(ports.http),
        "--https-port", str(ports.https),
        "--listen-host", "127.0.0.1",
    ]  # fmt: skip
    runs = {
        "render": command("render", *settings, "--bcrypt-cost", "4"),
        "check": command("check", "--routes", str(routes)),
        "diff": command("diff", *settings),
        "diff --full": command("diff", "--full", *settings),
        "diff --json": command("diff", "--json", *settings),
    }
    for name, run in runs.items():
        assert "Traceback" not in run.stderr, f"{name}: {run.stderr[-500:]}"
        # `render` shows the Caddy JSON, certificates included by design (README: keys and hashes redacted).
        canary.check(run.stdout + run.stderr, f"`coretraffic {name}`", certificates=name != "render")
    assert runs["render"].returncode == 0 and '"load_pem"' in runs["render"].stdout
    assert runs["check"].returncode == 1 and "4 errors" in runs["check"].stdout
    for host in ("mismatch", "garbage", "badauth", "longpass"):
        assert f"{host}.example.test: " in runs["check"].stdout
    assert runs["diff"].returncode == 1, runs["diff"].stderr
    assert "4 rejected" in runs["diff --full"].stdout


async def test_a_driver_at_debug_through_a_caddy_kill_and_hostile_files_shows_no_secret(
    ca: DemoCA, upstream: DemoUpstream, ports: Ports, short_tmp: Path, canary: Canary
) -> None:
    configs = canary_set(canary, ca, upstream.port)
    routes = short_tmp / "routes.json"
    routes.write_text(json.dumps(configs))
    state_dir = short_tmp / "state"
    status_port = free_port()
    args = [
        "run",
        "--routes", str(routes),
        "--state-dir", str(state_dir),
        "--http-port", str(ports.http),
        "--https-port", str(ports.https),
        "--listen-host", "127.0.0.1",
        "--bcrypt-cost", "4",
        "--log-level", "DEBUG",
        "--status-addr", f"127.0.0.1:{status_port}",
    ]  # fmt: skip
    driver = Driver(args)
    try:
        await wait_until(lambda: ready(status_port), 30, "the route set applied")
        [caddy_pid] = caddy_pids(str(state_dir))
        os.kill(caddy_pid, signal.SIGKILL)
        await wait_until(lambda: driver.said("restarting"), 10, "the supervisor to notice")
        await wait_until(lambda: serves(ca, ports.https, "plain.example.test"), 15, "serving again")
        # Hostile files, one after the other: each is reported, none is echoed.
        hostile = [
            f'[{{"privateKey": "{canary.password("in-broken-json")}"',  # cut short
            json.dumps({"reverseConfigs": {"privateKey": canary.password("not-a-list")}}),
            json.dumps([{**configs[1], "destinationPorts": ["80"], "hostName": "{env.HOME}"}, *configs]),
        ]
        reports = ("is not valid JSON", "must be a list of configs", "{env.HOME}: destinationPorts[0]")
        for text, report in zip(hostile, reports, strict=True):
            routes.write_text(text)
            await wait_until(partial(driver.said, report), 15, f"a hostile file reported ({report})")
        pages = await status_pages(status_port)
    finally:
        assert driver.stop() == 0
    assert '"ready": true' in pages and "restarting" in driver.output
    canary.check(driver.output, "the driver's DEBUG output")
    canary.check(pages, "/status and /metrics")


def test_a_private_key_pasted_into_public_key_is_never_printed(
    ca: DemoCA, canary: Canary, tmp_path: Path, ports: Ports
) -> None:
    config = canary.route(ca, "pasted.example.test", 9)
    config["publicKey"] = config["publicKey"] + config["privateKey"]  # a slip an operator can make
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps([config]))
    rendered = command("render", "--routes", str(routes), "--state-dir", str(tmp_path / "state"))
    canary.check(rendered.stdout + rendered.stderr, "`coretraffic render`", certificates=False)


async def test_a_deeply_nested_routes_file_keeps_the_last_good_config_serving(
    ca: DemoCA, upstream: DemoUpstream, ports: Ports, short_tmp: Path, canary: Canary, driver_flags: list[str]
) -> None:
    routes = short_tmp / "routes.json"
    routes.write_text(json.dumps([canary.route(ca, "plain.example.test", upstream.port)]))
    driver = Driver(["run", "--routes", str(routes), *driver_flags, "--status-addr", ""])
    try:
        await wait_until(lambda: serves(ca, ports.https, "plain.example.test"), 30, "the route served")
        routes.write_text("[" * 100_000)

        async def reported_or_gone() -> bool:
            return driver.process.poll() is not None or await driver.said("routes file")

        await wait_until(reported_or_gone, 15, "the nested file reported")
        assert driver.process.poll() is None, "the driver exited"
        assert await serves(ca, ports.https, "plain.example.test")
    finally:
        driver.stop()


async def test_the_access_log_of_every_request_shows_no_credential(
    ca: DemoCA, upstream: DemoUpstream, ports: Ports, canary: Canary, driver_flags: list[str], short_tmp: Path
) -> None:
    """`--access-log all` records every request's headers; the ones that carry credentials (Authorization, Cookie,
    Proxy-Authorization) must come out redacted, a right and a wrong password alike, in plain and base64 form."""
    configs = canary_set(canary, ca, upstream.port)[:2]
    routes = short_tmp / "routes.json"
    routes.write_text(json.dumps(configs))
    driver = Driver(["run", "--routes", str(routes), *driver_flags, "--status-addr", "", "--access-log", "all"])
    password = configs[0]["authentication"]["pass"]
    sent = [("alice", password), ("alice", canary.password("a wrong guess"))]
    try:
        await wait_until(lambda: serves(ca, ports.https, "plain.example.test"), 30, "the routes served")
        for user, secret in sent:
            response = await https_get(ca, ports.https, "good.example.test", auth=(user, secret))
            assert response.status_code in (200, 401)
        cookie = {"Cookie": f"session={canary.password('cookie')}", "Proxy-Authorization": canary.password("proxy")}
        await https_get(ca, ports.https, "plain.example.test", headers=cookie)
        await wait_until(lambda: driver.said('"status": 401'), 15, "the access log of the wrong guess")
        await wait_until(lambda: driver.said('"host": "plain.example.test"'), 15, "the access log of the cookie")
    finally:
        driver.stop()
    assert '"msg": "handled request"' in driver.output
    canary.check(driver.output, "the driver's output with the access log on")
    for user, secret in sent:
        assert base64.b64encode(f"{user}:{secret}".encode()).decode() not in driver.output
