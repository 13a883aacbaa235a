"""What a new operator meets in the first hour, as real processes: one driver per state directory, the demo's
own defaults, and commands that show and take only the flags they use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from coretraffic.app.demo import DEMO_HOSTS
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.dataplane import serves
from tests.support.driver import Driver, caddy_pids, ready
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until

TIMEOUT_S = 30


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coretraffic", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env={**os.environ, **(env or {})},
    )


async def test_a_second_driver_on_a_live_state_dir_exits_2_and_leaves_the_first_alone(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, driver_flags: list[str], ports: Ports
) -> None:
    state_dir = short_tmp / "state"
    routes = short_tmp / "routes.json"
    routes.write_text(json.dumps([demo_route(ca, "app.example.test", upstream.port)]))
    status_port = free_port()
    first = Driver(["run", "--routes", str(routes), *driver_flags, "--status-addr", f"127.0.0.1:{status_port}"])
    try:
        await wait_until(lambda: ready(status_port), 30, "the first driver ready")
        socket_before = (state_dir / "admin.sock").stat().st_ino
        second = command(
            "run", "--routes", str(routes), "--state-dir", str(state_dir),
            "--http-port", str(free_port()), "--https-port", str(free_port()), "--status-addr", "",
        )  # fmt: skip
        assert second.returncode == 2
        lines = second.stderr.splitlines()
        assert len(lines) == 1, second.stderr
        assert str(state_dir) in lines[0] and f"pid {first.process.pid}" in lines[0]
        # The first is untouched: its Caddy, its socket, its readiness, its hosts.
        assert len(caddy_pids(str(state_dir))) == 1
        assert (state_dir / "admin.sock").stat().st_ino == socket_before
        assert await ready(status_port)
        assert await serves(ca, ports.https, "app.example.test")
    finally:
        assert first.stop() == 0
    assert caddy_pids(str(state_dir)) == []
    # The lock went with the first driver: the next one starts (and is stopped at once).
    third = Driver(["run", "--routes", str(routes), *driver_flags, "--status-addr", f"127.0.0.1:{status_port}"])
    try:
        await wait_until(lambda: ready(status_port), 30, "a driver after the first one ended")
    finally:
        assert third.stop() == 0


async def test_the_demo_binds_loopback_in_its_own_state_dir_and_a_second_demo_exits_2(
    short_tmp: Path, ports: Ports
) -> None:
    env = {
        "XDG_STATE_HOME": str(short_tmp / "xdg"),
        "CORETRAFFIC_HTTP_PORT": str(ports.http),
        "CORETRAFFIC_HTTPS_PORT": str(ports.https),
        "CORETRAFFIC_STATUS_ADDR": "",
    }
    # From a directory that is not the repository: the demo finds its base config in the package.
    demo = Driver(["demo"], env=env, cwd=str(short_tmp))
    try:
        await wait_until(lambda: demo.said("coretraffic demo is serving"), 30, "the demo to start")
        assert "tcp_migrate_req" not in demo.output  # no kernel advice for a loopback trial
        state_dir = short_tmp / "xdg" / "coretraffic-demo"
        assert (state_dir / "demo-routes.json").is_file()
        assert not (short_tmp / "xdg" / "coretraffic").exists()  # run's state dir stays untouched
        assert "port 443" in demo.output
        admin = httpx.Client(transport=httpx.HTTPTransport(uds=str(state_dir / "admin.sock")), base_url="http://caddy")
        with admin:
            servers = admin.get("/config/apps/http/servers").json()
            assert admin.get("/config/apps/http/grace_period").json() == 10_000_000_000  # the shipped base config
        assert sorted(address for server in servers.values() for address in server["listen"]) == sorted(
            [f"127.0.0.1:{ports.http}", f"127.0.0.1:{ports.https}"]
        )
        with pytest.raises(OSError), socket.create_connection(("::1", ports.https), timeout=2):
            pass
        # `diff` beside the demo, given only its state dir, takes the demo's settings: nothing would change.
        beside = command("diff", "--routes", str(state_dir / "demo-routes.json"), "--state-dir", str(state_dir))
        assert beside.returncode == 0, beside.stdout + beside.stderr
        assert f"settings of the driver running on {state_dir}" in beside.stderr
        routes_before = (state_dir / "demo-routes.json").read_text()
        second = command("demo", env={**env, "CORETRAFFIC_HTTP_PORT": str(free_port())})
        assert second.returncode == 2 and f"pid {demo.process.pid}" in second.stderr
        assert (state_dir / "demo-routes.json").read_text() == routes_before
        # A host more, from the running demo's CA: what clients of the demo already trust.
        issued = command("demo", "--issue", "new.example.test", env=env)
        assert issued.returncode == 0, issued.stderr
        config = json.loads(issued.stdout)
        assert config["hostName"] == "new.example.test"
        leaf = x509.load_pem_x509_certificate(config["publicKey"].encode())
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate((state_dir / "demo-ca.pem").read_bytes()))
        # Added to the routes file as the hint says (--add), it is served by the demo's own upstream.
        assert f"add this config to the array in {state_dir / 'demo-routes.json'}, or run this again with --add" in (
            issued.stderr
        )
        added = command("demo", "--issue", "new.example.test", "--add", env=env)
        assert added.returncode == 0 and "new.example.test added to" in added.stdout, added.stderr
        assert [r["hostName"] for r in json.loads((state_dir / "demo-routes.json").read_text())] == [
            *DEMO_HOSTS,
            "new.example.test",
        ]
        demo_ca = DemoCA.from_pem((state_dir / "demo-ca.pem").read_text(), (state_dir / "demo-ca-key.pem").read_text())
        await wait_until(lambda: serves(demo_ca, ports.https, "new.example.test"), 30, "the issued host to serve")
    finally:
        assert demo.stop() == 0
    assert oct((state_dir / "demo-ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert DEMO_HOSTS[0] in routes_before


@pytest.mark.parametrize(
    ("name", "shown", "not_shown"),
    [
        ("check", ["--routes", "--strict"], ["--base-config", "--caddy-admin", "--http-port", "--log-level"]),
        ("status", ["--status-addr"], ["--routes", "--http-port"]),
        ("render", ["--routes", "--base-config", "--show-secrets"], ["--coreflow-url", "--status-addr"]),
        ("diff", ["--routes", "--caddy-admin", "--full"], ["--coreflow-url", "--bcrypt-cost"]),
        ("demo", ["--issue", "--https-port", "--state-dir"], ["--routes", "--coreflow-url", "--caddy-admin"]),
        ("run", ["--routes", "--coreflow-url", "--caddy-admin", "--log-format"], ["--issue", "--strict"]),
    ],
)
def test_each_command_shows_only_the_flags_it_uses(name: str, shown: list[str], not_shown: list[str]) -> None:
    run = command(name, "--help")
    assert run.returncode == 0
    flags = {word.rstrip(",") for word in run.stdout.split() if word.startswith("--")}
    assert set(shown) <= flags, flags
    assert not set(not_shown) & flags, flags


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["demo", "--routes", "x.json"], "--routes"),
        (["check", "--routes", "x.json", "--base-config", "b"], "--base-config"),
        (["status", "--http-port", "1"], "--http-port"),
    ],
)
def test_a_flag_a_command_does_not_use_is_refused(args: list[str], refused: str) -> None:
    run = command(*args)
    assert run.returncode == 2
    assert f"unrecognized arguments: {refused}" in run.stderr


def test_the_demo_help_shows_its_own_defaults() -> None:
    # Without white space: argparse wraps long defaults, at a hyphen too (the state dir under the tests' own
    # XDG_STATE_HOME is long).
    text = "".join(command("demo", "--help").stdout.split())
    assert "default:127.0.0.1" in text and "coretraffic-demo" in text
