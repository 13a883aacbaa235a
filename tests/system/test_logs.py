"""Logs: no secret in any line of a real driver's log (the formats themselves: tests/unit/test_log_formats.py).

The canary tests run the real driver at DEBUG with canary-bearing routes, good and broken, from a routes file
and from the real Coreflow peer, let it apply, and search everything it printed (and its status server's
answers) for keys, certificate bodies, passwords and password hashes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.coreflow import Peer
from tests.support.driver import Driver, ready, status_pages
from tests.support.ports import free_port
from tests.support.waiting import wait_until

CANARY = "CANARY-7c1d"
BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


# -- the canary ----------------------------------------------------------------------------------------------


def canary_routes(ca: DemoCA, upstream_port: int) -> list[dict[str, Any]]:
    """Two good hosts and four broken ones, each carrying the canary in a secret field."""

    def route(host: str, **overrides: Any) -> dict[str, Any]:
        return {**demo_route(ca, host, upstream_port), **overrides}

    good = route("good.example.test")
    # PEM parsers skip text before the BEGIN line: the canary rides along in a key that is still valid.
    good["privateKey"] = f"{CANARY}-key\n{good['privateKey']}"
    good["authentication"] = {"type": "Basic", "user": "alice", "pass": f"{CANARY}-pass"}
    plain = route("plain.example.test")
    return [
        good,
        plain,
        route("mismatch.example.test", privateKey=f"{CANARY}-key\n{plain['privateKey']}"),
        route(
            "badkey.example.test", privateKey=f"-----BEGIN PRIVATE KEY-----\n{CANARY}-body\n-----END PRIVATE KEY-----\n"
        ),
        route(
            "badcert.example.test", publicKey=f"-----BEGIN CERTIFICATE-----\n{CANARY}-cert\n-----END CERTIFICATE-----\n"
        ),
        route("badauth.example.test", authentication={"type": "Basic", "user": "a:b", "pass": f"{CANARY}-pass"}),
    ]


def secrets_in(configs: list[dict[str, Any]], state_dir: Path) -> list[str]:
    """Every secret a log line must not hold: the canary, PEM markers and bodies, and the hashes Caddy got."""
    found = [CANARY, "PRIVATE KEY", "BEGIN CERTIFICATE"]
    for config in configs:
        for pem in (config["privateKey"], config["publicKey"]):
            found.extend(line for line in pem.splitlines() if len(line) >= 16 and "-----" not in line)
    autosave = state_dir / "config" / "caddy" / "autosave.json"
    hashes = BCRYPT_HASH.findall(autosave.read_text())
    assert hashes, "Caddy got the password hash the test looks for"
    return [*found, *hashes, "$2b$"]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"secrets in the output: {leaked[:3]}"


def assert_json_lines(lines: list[str]) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    return entries


@pytest.fixture
def run_args(driver_flags: list[str]) -> list[str]:
    return ["run", *driver_flags, "--log-level", "DEBUG"]


async def test_no_secret_in_any_log_line_from_a_routes_file(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, run_args: list[str]
) -> None:
    configs = canary_routes(ca, upstream.port)
    routes = short_tmp / "routes.json"
    routes.write_text(json.dumps(configs))
    status_port = free_port()
    driver = Driver([*run_args, "--routes", str(routes), "--status-addr", f"127.0.0.1:{status_port}"])
    try:
        await wait_until(lambda: ready(status_port), 30, "the route set applied")
        pages = await status_pages(status_port)
        routes.write_text(f'[{{"privateKey": "{CANARY}-file"}} oops]')  # a broken file: reported, not echoed
        await wait_until(lambda: driver.said("is not valid JSON"), 10, "the broken file reported")
    finally:
        assert driver.stop() == 0
    entries = assert_json_lines(driver.lines)
    for host in ("mismatch", "badkey", "badcert", "badauth"):
        assert f"{host}.example.test: " in pages and f"{host}.example.test: " in driver.output
    assert any(entry["level"] == "debug" for entry in entries)
    assert any(entry.get("source") == "caddy" and isinstance(entry.get("caddy"), dict) for entry in entries)
    assert_no_secret(driver.output + pages, secrets_in(configs, short_tmp / "state"))


async def test_no_secret_in_any_log_line_from_coreflow(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, run_args: list[str]
) -> None:
    configs = canary_routes(ca, upstream.port)
    peer = await Peer.start()
    status_port = free_port()
    driver = Driver(
        [*run_args, "--status-addr", f"127.0.0.1:{status_port}"], env={"CORETRAFFIC_COREFLOW_URL": peer.url}
    )
    try:
        await peer.status(until_tagged=True, wait_s=30)
        answer = json.dumps(await peer.call("updateRouting", {"reverseConfigs": configs}))
        assert "4 rejected" in answer
        await wait_until(lambda: ready(status_port), 30, "the route set applied")
        pages = await status_pages(status_port)
    finally:
        assert driver.stop() == 0
        await peer.close()
    assert_json_lines(driver.lines)
    assert "updateRouting" in driver.output
    assert_no_secret(driver.output + pages + answer, secrets_in(configs, short_tmp / "state"))
