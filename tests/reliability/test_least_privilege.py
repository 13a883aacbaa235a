"""Least privilege of the spawned Caddy: no admin API on TCP, no listener but the two data-plane ports, a private
state directory, and a clear one-line start-up error when that directory cannot be had.

Listeners are read from the kernel (/proc/net/tcp*, matched to Caddy's own socket inodes), not from Caddy's
config: what is open is what counts. tests/system/test_cli_run.py covers a state dir under a regular file; this adds the
other ways it can be unusable.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from coretraffic.caddy.process import CaddyProcess
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import validated
from tests.support.canary import Canary
from tests.support.dataplane import serves
from tests.support.ports import Ports

pytestmark = pytest.mark.timeout(60)

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp
_UNCONNECTED = "07"  # UDP sockets bound but not connected (listeners)


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def bound_ports(pid: int, table: str, state: str) -> set[int]:
    """Local ports of the process's sockets in /proc/<pid>/net/<table> that are in `state`."""
    mine = socket_inodes(pid)
    ports = set()
    for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and int(fields[9]) in mine:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_spawned_caddy_listens_on_the_data_plane_ports_only_and_keeps_its_state_private(
    caddy: CaddyProcess, reconciler: Reconciler, ca: DemoCA, upstream: DemoUpstream, ports: Ports, canary: Canary
) -> None:
    configs = [canary.route(ca, "priv.example.test", upstream.port, password="lp")]
    assert (await reconciler.submit(validated(configs))).ok
    assert caddy.pid is not None

    tcp = bound_ports(caddy.pid, "tcp", _LISTEN) | bound_ports(caddy.pid, "tcp6", _LISTEN)
    udp = bound_ports(caddy.pid, "udp", _UNCONNECTED) | bound_ports(caddy.pid, "udp6", _UNCONNECTED)
    print(f"\nspawned Caddy (pid {caddy.pid}) listens on TCP {sorted(tcp)}, UDP {sorted(udp)}")
    assert tcp == {ports.http, ports.https}, f"Caddy's TCP listeners: {sorted(tcp)}"
    assert 2019 not in tcp
    assert udp == set(), f"UDP listeners with HTTP/3 off: {sorted(udp)}"
    assert await serves(ca, ports.https, "priv.example.test") is False  # basic auth: 401 without credentials

    state = caddy.state_dir
    socket_path = state / "admin.sock"
    autosave = state / "config" / "caddy" / "autosave.json"
    assert mode(state) == 0o700, oct(mode(state))
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert mode(socket_path) & 0o077 == 0, f"admin socket mode {oct(mode(socket_path))}"
    assert mode(autosave) == 0o600, oct(mode(autosave))
    # Whatever else holds a private key or a password hash must be private too.
    for path in state.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_text(errors="replace")
            if "PRIVATE KEY" in text or "$2b$" in text:
                assert mode(path) & 0o077 == 0, f"{path} holds secrets with mode {oct(mode(path))}"


async def test_a_wider_existing_state_dir_is_narrowed_to_0700(short_tmp: Path) -> None:
    state = short_tmp / "wide"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # whatever the umask
    caddy = CaddyProcess(state)
    await caddy.start()
    try:
        assert mode(state) == 0o700, oct(mode(state))
    finally:
        await caddy.stop()


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory nobody can create anything in: sysfs for root (permissions do not stop root), else 0500."""
    if os.geteuid() == 0:
        return Path("/sys/coretraffic-state")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked / "state"


@pytest.mark.parametrize("case", ["unwritable", "a regular file", "path too long for a socket"])
def test_an_unusable_state_dir_is_one_line_and_exit_2(case: str, tmp_path: Path, short_tmp: Path) -> None:
    routes = short_tmp / "routes.json"
    routes.write_text("[]")
    if case == "unwritable":
        state = unwritable_dir(tmp_path)
    elif case == "a regular file":
        state = short_tmp / "state"
        state.write_text("")
    else:
        state = short_tmp / ("d" * 120)
    completed = subprocess.run(
        [sys.executable, "-m", "coretraffic", "run", "--routes", str(routes), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")} | {"CORETRAFFIC_STATUS_ADDR": ""},
    )
    assert completed.returncode == 2, completed.stderr[-800:]
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("coretraffic: "), completed.stderr[-800:]
    assert "state directory" in completed.stderr and "Traceback" not in completed.stderr
