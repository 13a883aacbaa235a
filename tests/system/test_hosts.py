"""`GET /hosts` and `coretraffic hosts` against a real `coretraffic run --routes FILE` (a real Caddy behind it): every
host with its state and why, its upstreams, auth on or off and the certificate Caddy actually serves, and no
secret in what an operator reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.dataplane import https_get, served_certificate, serves
from tests.support.driver import Driver, command, write_routes
from tests.support.ports import Ports, free_port
from tests.support.status import Status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

PLAIN, AUTHED, REJECTED = "plain.example.test", "authed.example.test", "rejected.example.test"
PASSWORD = "hosts-canary-password-7f3a"


async def hosts_of(status: Status) -> dict[str, dict[str, Any]]:
    """`/hosts` entries by host name (none while the status server does not answer)."""
    try:
        return {entry["host"]: entry for entry in (await status.get("/hosts")).json()["hosts"]}
    except (httpx.TransportError, ValueError):
        return {}


def served_sha256(port: int, host: str) -> str:
    """The SHA-256 of the DER of the certificate Caddy serves for `host` (SNI)."""
    return hashlib.sha256(served_certificate(port, host)).hexdigest()


def secrets_of(configs: list[dict[str, Any]]) -> list[str]:
    """Each private key's PEM body lines and the password: what must never be printed."""
    lines = [line for c in configs for line in c["privateKey"].splitlines() if "-----" not in line and line]
    return [*lines, PASSWORD]


async def test_hosts_lists_each_host_as_served_over_tls_and_a_bad_rotation_turns_stale(
    ca: DemoCA,
    upstream: DemoUpstream,
    second_upstream: DemoUpstream,
    short_tmp: Path,
    driver_flags: list[str],
    ports: Ports,
) -> None:
    status = Status(free_port())
    routes = short_tmp / "routes.json"
    plain = demo_route(ca, PLAIN, upstream.port)
    authed = demo_route(ca, AUTHED, second_upstream.port)
    authed["authentication"] = {"type": "Basic", "user": "alice", "pass": PASSWORD}
    rejected = {**demo_route(ca, REJECTED, upstream.port), "privateKey": ca.issue([REJECTED]).private_key_pem}
    write_routes(routes, [plain, authed, rejected])
    driver = Driver(["run", *driver_flags, "--status-addr", status.address, "--routes", str(routes)])
    try:
        await wait_until(lambda: serves(ca, ports.https, PLAIN), 60, f"{PLAIN} served")
        assert (await https_get(ca, ports.https, AUTHED)).status_code == 401
        hosts = await hosts_of(status)
        assert sorted(hosts) == [AUTHED, PLAIN, REJECTED]
        for name in (PLAIN, AUTHED):
            entry = hosts[name]
            served = served_sha256(ports.https, name)
            assert entry["state"] == "served" and entry["reason"] == []
            assert entry["certificate"]["sha256"] == served and entry["certificate"]["expired"] is False
        assert hosts[PLAIN]["auth"] is False and hosts[PLAIN]["upstreams"] == [f"127.0.0.1:{upstream.port}"]
        assert hosts[AUTHED]["auth"] is True and hosts[AUTHED]["upstreams"] == [f"127.0.0.1:{second_upstream.port}"]
        assert hosts[REJECTED]["state"] == "rejected" and hosts[REJECTED]["certificate"] is None
        assert hosts[REJECTED]["reason"] == ["privateKey: does not match the certificate in publicKey"]
        served_before = hosts[AUTHED]["certificate"]["sha256"]

        rotated = {**authed, "privateKey": ca.issue([AUTHED]).private_key_pem}
        write_routes(routes, [plain, rotated, rejected])
        await wait_until(lambda: _state_is(status, AUTHED, "stale"), 30, f"{AUTHED} stale in /hosts")

        listed = command("hosts", "--json", "--status-addr", status.address)
        assert listed.returncode == 0, listed.stderr
        document = json.loads(listed.stdout)
        assert document["set"]["number"] == 2 and document["set"]["applied"] is True
        stale = {entry["host"]: entry for entry in document["hosts"]}[AUTHED]
        assert stale["reason"] == ["privateKey: does not match the certificate in publicKey"] and stale["since"]
        # The last good version serves: its certificate, its auth.
        assert stale["certificate"]["sha256"] == served_before == served_sha256(ports.https, AUTHED)
        assert stale["auth"] is True and (await https_get(ca, ports.https, AUTHED)).status_code == 401

        table = command("hosts", "--status-addr", status.address)
        assert table.returncode == 0, table.stderr
        header, *rows, summary = table.stdout.splitlines()
        assert header.split() == ["HOST", "STATE", "AUTH", "UPSTREAMS", "CERT", "SHA-256", "EXPIRES", "REASON"]
        assert [row.split()[:3] for row in rows] == [
            [AUTHED, "stale", "on"],
            [PLAIN, "served", "off"],
            [REJECTED, "rejected", "-"],
        ]
        assert "privateKey: does not match" in rows[0] and served_before[:16] in rows[0]
        assert summary.startswith("3 hosts: 1 served, 1 stale, 1 rejected (route set 2, received ")

        for output in (listed.stdout, table.stdout):
            for secret in secrets_of([plain, authed, rotated, rejected]):
                assert secret not in output

        chosen = command("hosts", AUTHED.upper(), "nowhere.example.test", "--status-addr", status.address)
        assert chosen.returncode == 1
        assert [row.split()[0] for row in chosen.stdout.splitlines()[1:-1]] == [AUTHED]
        assert chosen.stderr == (
            "coretraffic: nowhere.example.test is not among the hosts of the driver's newest route set\n"
        )
        bogus = await status.get("/hosts?state=bogus")
        assert bogus.status_code == 400 and bogus.text.startswith("state must be one of served, stale, rejected")
        only_stale = command("hosts", "--state", "stale", "--json", "--status-addr", status.address)
        assert [entry["host"] for entry in json.loads(only_stale.stdout)["hosts"]] == [AUTHED]
        pointer = "hosts:   1 stale, 1 rejected: `coretraffic hosts` lists every host with its state and why"
        assert pointer in command("status", "--status-addr", status.address).stdout
    finally:
        assert driver.stop() == 0, driver.output


def test_hosts_without_a_status_server_is_a_one_line_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    done = command("hosts", "--status-addr", address)
    assert done.returncode == 2
    assert done.stderr == (
        f"coretraffic: no status server at {address}: connection refused; is the driver running, "
        f"with --status-addr {address}?\n"
    )


async def _state_is(status: Status, host: str, state: str) -> bool:
    return (await hosts_of(status)).get(host, {}).get("state") == state
