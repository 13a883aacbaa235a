"""`diff` and `render` beside a running `coretraffic run`: they take the settings it recorded in its state dir.

A real driver with settings far from the defaults, a real Caddy, the commands as an operator runs them (a
subprocess with no `CORETRAFFIC_*` variable: whatever they know of the driver's settings, they read from its file).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from coretraffic import __version__
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess, spawned_admin_address
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.dataplane import serves
from tests.support.driver import Driver
from tests.support.ports import Ports
from tests.support.waiting import wait_until

SETTINGS_FILE = "driver-settings.json"
SUMMARY_SAME = "0 added, 0 removed, 0 changed, 0 rejected, 1 unchanged\n"


def command(*args: str) -> subprocess.CompletedProcess[str]:
    """A one-shot `coretraffic` command with no `CORETRAFFIC_*` variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")}
    return subprocess.run(
        [sys.executable, "-m", "coretraffic", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def state_dir(short_tmp: Path) -> Path:
    return short_tmp / "state"


@pytest.fixture
def routes(short_tmp: Path, ca: DemoCA, upstream: DemoUpstream) -> Path:
    path = short_tmp / "routes.json"
    path.write_text(json.dumps([demo_route(ca, "app.example.test", upstream.port)]))
    return path


async def test_diff_and_render_beside_a_running_driver_take_its_settings(
    ca: DemoCA, routes: Path, state_dir: Path, short_tmp: Path, ports: Ports
) -> None:
    base = short_tmp / "Caddyfile"
    base.write_text("{\n\tgrace_period 3s\n}\n")
    driver = Driver(
        ["run", "--routes", str(routes), "--state-dir", str(state_dir),
         "--http-port", str(ports.http), "--https-port", str(ports.https), "--listen-host", "127.0.0.1",
         "--upstream-dial-timeout", "3", "--traffic-metrics", "server", "--access-log", "all",
         "--base-config", str(base), "--bcrypt-cost", "4",
         "--status-addr", ""]  # no status server: the settings are read from the state dir
    )  # fmt: skip
    try:
        await wait_until(partial(serves, ca, ports.https, "app.example.test"), 30, "the route served")
        running_on = f"coretraffic: using the settings of the driver running on {state_dir} (pid {driver.process.pid}"

        same = command("diff", "--routes", str(routes), "--state-dir", str(state_dir))
        assert (same.returncode, same.stdout[-len(SUMMARY_SAME) :]) == (0, SUMMARY_SAME), same.stdout + same.stderr
        assert same.stderr.startswith(running_on) and len(same.stderr.splitlines()) == 1, same.stderr

        # A flag still wins over the driver's settings; without them, its settings show as changes.
        flag_wins = command("diff", "--routes", str(routes), "--state-dir", str(state_dir), "--upstream-dial-timeout=2")
        assert flag_wins.returncode == 1 and flag_wins.stderr.startswith(running_on), flag_wins.stderr
        ignored = command("diff", "--routes", str(routes), "--state-dir", str(state_dir), "--no-driver-settings")
        assert ignored.returncode == 1 and "using the settings" not in ignored.stderr, ignored.stderr

        # `render` prints what Caddy runs.
        rendered = command("render", "--routes", str(routes), "--state-dir", str(state_dir), "--show-secrets")
        assert rendered.returncode == 0 and rendered.stderr.startswith(running_on), rendered.stderr
        admin = CaddyAdmin(spawned_admin_address(state_dir))
        try:
            assert json.loads(rendered.stdout) == await admin.get_config()
        finally:
            await admin.aclose()

        # The record: private, the driver's pid and version, paths but no secret.
        record = state_dir / SETTINGS_FILE
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        document = json.loads(record.read_text())
        assert (document["pid"], document["version"]) == (driver.process.pid, __version__)
        assert document["settings"]["base_config"] == str(base)
        assert "coreflow_url" not in document["settings"]
        assert "PRIVATE KEY" not in record.read_text() and "CERTIFICATE" not in record.read_text()
    finally:
        assert driver.stop() == 0

    # Stopped: the record names it as the driver last run there, and the hint says what to do.
    stopped = command("diff", "--routes", str(routes), "--state-dir", str(state_dir))
    assert stopped.returncode == 2 and stopped.stdout == ""
    first, hint = stopped.stderr.splitlines()
    last_run = f"the driver last run on {state_dir} (pid {driver.process.pid}, not running now)"
    assert first == f"coretraffic: using the settings of {last_run}"
    assert hint.startswith(
        f"coretraffic: no Caddy admin API at unix/{state_dir.resolve()}/admin.sock (no such socket): "
    )
    assert "; start it, or give --state-dir of the running driver, or --caddy-admin" in hint


def test_diff_on_a_state_dir_without_a_driver_says_what_to_do(routes: Path, state_dir: Path) -> None:
    done = command("diff", "--routes", str(routes), "--state-dir", str(state_dir))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"coretraffic: no Caddy admin API at unix/{state_dir.resolve()}/admin.sock (no such socket): no driver that "
        f"spawns its Caddy runs on state dir {state_dir}; give --state-dir of the running driver, or --caddy-admin\n"
    )
    refused = command("diff", "--routes", str(routes), "--state-dir", str(state_dir), "--caddy-admin=127.0.0.1:1")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith("coretraffic: no Caddy admin API at http://127.0.0.1:1 (connection refused): ")
    for failed in (done, refused):
        assert "Error(" not in failed.stderr and "Traceback" not in failed.stderr


def test_a_corrupt_record_is_one_warning_and_the_defaults(routes: Path, state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    (state_dir / SETTINGS_FILE).write_text("{ not json")
    done = command("render", "--routes", str(routes), "--state-dir", str(state_dir))
    assert done.returncode == 0
    assert (
        done.stderr
        == f"coretraffic: warning: {state_dir / SETTINGS_FILE} is not valid JSON; its driver's settings are not used\n"
    )
    assert ":8000" in json.dumps(json.loads(done.stdout)["apps"]["http"]["servers"])  # the default HTTPS port


def test_a_record_of_another_version_gives_what_this_one_takes(routes: Path, state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    settings = {"http_port": 9001, "https_port": "not a port", "from_the_future": True, "listen_host": {"a": 1}}
    (state_dir / SETTINGS_FILE).write_text(json.dumps({"pid": 1, "version": "99", "settings": settings}))
    done = command("render", "--routes", str(routes), "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    warning, using = done.stderr.splitlines()
    assert warning.startswith(
        f"coretraffic: warning: {state_dir / SETTINGS_FILE}: ignored what this version does not take: "
    )
    for name in ("from_the_future (unknown)", "listen_host (not a setting's value)", "https_port (Input should be"):
        assert name in warning
    assert using == f"coretraffic: using the settings of the driver last run on {state_dir} (pid 1, not running now)"
    servers = json.dumps(json.loads(done.stdout)["apps"]["http"]["servers"])
    assert ":9001" in servers and ":8000" in servers  # the recorded HTTP port, the default HTTPS one


async def test_diff_beside_a_driver_of_an_existing_caddy_finds_that_caddy(
    ca: DemoCA, routes: Path, short_tmp: Path, ports: Ports, caddy: CaddyProcess
) -> None:
    state_dir = short_tmp / "driver-state"  # not the Caddy's: this driver takes no lock, its pid says if it runs
    driver = Driver(
        ["run", "--routes", str(routes), "--caddy-admin", caddy.admin_address.listen, "--state-dir", str(state_dir),
         "--http-port", str(ports.http), "--https-port", str(ports.https), "--listen-host", "127.0.0.1",
         "--bcrypt-cost", "4", "--status-addr", ""]
    )  # fmt: skip
    try:
        await wait_until(partial(serves, ca, ports.https, "app.example.test"), 30, "the route served")
        same = command("diff", "--routes", str(routes), "--state-dir", str(state_dir))
        assert (same.returncode, same.stdout[-len(SUMMARY_SAME) :]) == (0, SUMMARY_SAME), same.stdout + same.stderr
        assert same.stderr.startswith(f"coretraffic: using the settings of the driver running on {state_dir} (pid ")
    finally:
        assert driver.stop() == 0
    stopped = command("diff", "--routes", str(routes), "--state-dir", str(state_dir))
    assert stopped.returncode == 0, stopped.stderr  # its Caddy still runs the set
    assert stopped.stderr == (
        f"coretraffic: using the settings of the driver last run on {state_dir} (pid {driver.process.pid}, "
        "not running now)\n"
    )
