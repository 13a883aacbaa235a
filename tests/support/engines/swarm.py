"""A Docker Swarm of several real `dockerd` on one machine, each node in network and mount namespaces of its own.

Each node is Debian's dockerd (with the containerd it starts) run under `nsenter --net` into a namespace of the
suite's and `unshare --mount --uts` (its mounts die with it; its own host name, which Swarm shows as the node's),
with its own data root, exec root, pidfile, socket and cgroup parent. The nodes' namespaces hang off one bridge
in a "switch" namespace; a veth from the switch to this (the test's) namespace lets the tests reach every node's
published ports at its own address, as clients reach edge nodes. `ip netns exec` is not used: it remounts /sys,
which hides the cgroup mounts dockerd needs ("Devices cgroup isn't mounted").

Everything is named with `PREFIX` and lives under one run directory, so `Swarm.close` (and `remove_leftovers`, for
a run that was killed) removes exactly what the suite made: the processes whose command line names the run
directory (dockerd, containerd, their shims), the processes in the nodes' cgroups (the containers), the cgroups,
the namespaces and the directories.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.engines.images import run

PREFIX = "ctengine"
SWITCH = f"{PREFIX}-sw"
HOST_LINK = f"{PREFIX}-host"
SUBNET = "10.77.0"  # node i at .i, the tests at .254
TEST_ADDRESS = f"{SUBNET}.254"
STATE = Path("/var/lib/coretraffic-engines/swarm")  # the nodes' data roots: on disk, removed by close()
RUNTIME = Path("/run/coretraffic-engines/swarm")
DOCKER = "/usr/bin/docker"  # Debian's client, matching its daemon (another may be first on PATH)
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Node:
    index: int

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.index}"

    @property
    def data_root(self) -> Path:
        return STATE / self.name

    @property
    def exec_root(self) -> Path:
        return RUNTIME / self.name

    @property
    def socket(self) -> Path:
        return self.exec_root / "docker.sock"

    @property
    def cgroup_parent(self) -> str:
        return f"{PREFIX}-{self.name}"

    def docker_argv(self, *args: str) -> list[str]:
        return [DOCKER, "--host", f"unix://{self.socket}", *args]

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.docker_argv(*args), timeout=timeout, check=check)


class Swarm:
    """`count` nodes: node1 the manager, the others workers. `start` raises with the daemons' errors."""

    def __init__(self, count: int = 3) -> None:
        self.nodes = [Node(i) for i in range(1, count + 1)]
        self._daemons: list[subprocess.Popen[bytes]] = []

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def start(self) -> None:
        remove_leftovers()
        self._network()
        for node in self.nodes:
            self._daemons.append(self._dockerd(node))
        for node, daemon in zip(self.nodes, self._daemons, strict=True):
            self._wait_ready(node, daemon)
        self.manager.docker("swarm", "init", "--advertise-addr", self.manager.address)
        token = self.manager.docker("swarm", "join-token", "--quiet", "worker").stdout.strip()
        for node in self.nodes[1:]:
            node.docker(
                "swarm", "join", "--token", token, "--advertise-addr", node.address, f"{self.manager.address}:2377"
            )

    def close(self) -> None:
        """Kills, not stops: nothing of a test swarm needs saving, and a daemon stopping its containers one grace
        period after another would only make the suite slower."""
        remove_leftovers()
        for daemon in self._daemons:
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(timeout=10)

    def daemon_log(self, node: Node, lines: int = 40) -> str:
        path = node.exec_root.parent / f"{node.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- making it -----------------------------------------------------------------------------------------

    def _network(self) -> None:
        ip = ["ip"]
        run([*ip, "netns", "add", SWITCH], timeout=10)
        run([*ip, "-n", SWITCH, "link", "add", "br0", "type", "bridge"], timeout=10)
        run([*ip, "-n", SWITCH, "link", "set", "br0", "up"], timeout=10)
        for node in self.nodes:
            run([*ip, "netns", "add", node.netns], timeout=10)
            port = f"{PREFIX}-p{node.index}"
            run(
                [
                    *ip,
                    "link",
                    "add",
                    port,
                    "netns",
                    SWITCH,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    node.netns,
                ],
                timeout=10,
            )
            run([*ip, "-n", SWITCH, "link", "set", port, "master", "br0", "up"], timeout=10)
            run([*ip, "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0"], timeout=10)
            run([*ip, "-n", node.netns, "link", "set", "eth0", "up"], timeout=10)
            run([*ip, "-n", node.netns, "link", "set", "lo", "up"], timeout=10)
        run([*ip, "link", "add", HOST_LINK, "type", "veth", "peer", "name", "uplink", "netns", SWITCH], timeout=10)
        run([*ip, "-n", SWITCH, "link", "set", "uplink", "master", "br0", "up"], timeout=10)
        run([*ip, "addr", "add", f"{TEST_ADDRESS}/24", "dev", HOST_LINK], timeout=10)
        run([*ip, "link", "set", HOST_LINK, "up"], timeout=10)

    def _dockerd(self, node: Node) -> subprocess.Popen[bytes]:
        node.data_root.mkdir(parents=True, exist_ok=True)
        node.exec_root.mkdir(parents=True, exist_ok=True)
        dockerd = " ".join(
            [
                "exec dockerd",
                f"--data-root {node.data_root}",
                f"--exec-root {node.exec_root}/exec",
                f"--pidfile {node.exec_root}/docker.pid",
                f"--host unix://{node.socket}",
                f"--cgroup-parent /{node.cgroup_parent}",
            ]
        )
        log = (node.exec_root.parent / f"{node.name}.log").open("wb")
        with log:
            return subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{node.netns}",
                    "unshare",
                    "--mount",
                    "--uts",
                    "sh",
                    "-c",
                    f"hostname {node.name} && {dockerd}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self, node: Node, daemon: subprocess.Popen[bytes], deadline_s: float = 90) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise RuntimeError(f"dockerd of {node.name} exited {daemon.returncode}:\n{self.daemon_log(node)}")
            if node.docker("version", "--format", "{{.Server.Version}}", timeout=10, check=False).returncode == 0:
                return
            time.sleep(0.3)  # polling a socket that is not there yet; the deadline bounds it
        raise RuntimeError(f"dockerd of {node.name} not answering after {deadline_s:.0f} s:\n{self.daemon_log(node)}")


# -- cleaning up ---------------------------------------------------------------------------------------------


def _ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(RUNTIME).encode() in cmdline or str(STATE).encode() in cmdline


def _pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _cgroup_dirs() -> list[Path]:
    """Every cgroup directory under the nodes' cgroup parents, deepest first (they must be removed so)."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        for parent in hierarchy.glob(f"{PREFIX}-node*"):
            found.extend(_directories_under(parent))
            found.append(parent)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _directories_under(parent: Path) -> list[Path]:
    """The directories below `parent`, walked while containers exit: the kernel removes a cgroup directory as its
    last process goes, so one listed a moment ago may be gone when the walk enters it (that is no error)."""
    found: list[Path] = []
    for directory, subdirectories, _ in os.walk(parent, onerror=lambda _: None):
        found.extend(Path(directory) / name for name in subdirectories)
    return found


def _kill_all(deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        victims = {pid for pid in _pids() if _ours(pid)}
        for directory in _cgroup_dirs():
            with contextlib.suppress(OSError):
                victims |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
        victims.discard(os.getpid())
        if not victims or time.monotonic() > deadline:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)  # the kernel reaps asynchronously; re-read until none is left


def remove_leftovers() -> None:
    """Everything a run of this suite made, whether it ended well or was killed."""
    _kill_all()
    for directory in _cgroup_dirs():
        with contextlib.suppress(OSError):
            directory.rmdir()
    names = run(["ip", "netns", "list"], timeout=10).stdout.split()
    for name in names:
        if name.startswith(f"{PREFIX}-"):
            run(["ip", "netns", "delete", name], timeout=10, check=False)
    run(["ip", "link", "delete", HOST_LINK], timeout=10, check=False)
    # rm, not shutil.rmtree: the data roots hold a few hundred thousand files, which Python removes slowly.
    run(["rm", "-rf", "--one-file-system", str(STATE), str(RUNTIME)], timeout=300, check=False)
