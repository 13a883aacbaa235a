"""deploy/pod.yaml through `podman kube play`, as its header says, with Coreflow's stand-in beside it.

Podman runs in a network namespace of the suite's (its bridge, firewall rules and published ports stay there),
with its network definitions in a directory of the suite's; a veth from that namespace to the test's lets the
tests reach the pod's published ports 80 and 443 as a client would. The pod and the stand-in share a podman
network with DNS, so the pod's `http://coreflow:3000` is the stand-in. Something already listens on 9180 in
that namespace, as on a machine that runs another exporter there: the pod must start all the same.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from coretraffic.testing.pki import DemoCA
from tests.support.coreflow import Peer
from tests.support.engines import images
from tests.support.engines.deployment import route_set
from tests.support.engines.images import REPO, run
from tests.support.engines.probe import Host, client, serves_all
from tests.support.engines.swarm import PREFIX

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]

POD_FILE = REPO / "deploy" / "pod.yaml"
NETNS = f"{PREFIX}-pod"
LINK = f"{PREFIX}-podh"
POD_ADDRESS, TEST_ADDRESS = "10.79.0.1", "10.79.0.254"
NETWORK, SUBNET = f"{PREFIX}-pod", "10.89.77.0/24"
UPSTREAM_IP, UPSTREAM_PORT = "10.89.77.200", 8080
NETWORK_CONFIG = Path("/run/coretraffic-engines/pod-networks")
CONTAINERS_CONF = Path("/run/coretraffic-engines/pod-containers.conf")
HOSTS = [Host("pod.example.test"), Host("pod-locked.example.test", auth=True)]
OK = {"outcome": "response", "response": {"status": "ok", "errorText": ""}}


def podman_here(*args: str) -> list[str]:
    """podman in the suite's namespace, storage, network definitions and containers.conf (`write_limits`)."""
    podman, *rest = images.podman_argv(*args)
    return [
        "env",
        f"CONTAINERS_CONF={CONTAINERS_CONF}",
        "nsenter",
        f"--net=/run/netns/{NETNS}",
        podman,
        "--network-config-dir",
        str(NETWORK_CONFIG),
        *rest,
    ]


def write_limits() -> None:
    """Podman (4.3) run as root gives each container the highest open-files and processes limits it can think of;
    where the runtime may not raise them (this CI machine: "error setting rlimit type 7: operation not
    permitted", then type 6 above kernel.pid_max), every container fails to start. Docker leaves them as they
    are. The suite's containers.conf sets them to what this process has: a machine setting, not the pod's."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    if nofile == resource.RLIM_INFINITY:
        nofile = int(Path("/proc/sys/fs/nr_open").read_text())
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(
        f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    )


def remove_pod_leftovers() -> None:
    if Path(f"/run/netns/{NETNS}").exists():
        run(podman_here("pod", "rm", "--all", "--force"), timeout=120, check=False)
        run(podman_here("rm", "--all", "--force"), timeout=120, check=False)
        run(podman_here("volume", "prune", "--force"), timeout=60, check=False)
        run(["ip", "netns", "delete", NETNS], timeout=10, check=False)
    run(["ip", "link", "delete", LINK], timeout=10, check=False)
    shutil.rmtree(NETWORK_CONFIG, ignore_errors=True)


@pytest.fixture(scope="module")
def namespace(built_images: None) -> Iterator[None]:
    write_limits()
    remove_pod_leftovers()
    try:
        run(["ip", "netns", "add", NETNS], timeout=10)
        run(["ip", "link", "add", LINK, "type", "veth", "peer", "name", "eth0", "netns", NETNS], timeout=10)
        run(["ip", "-n", NETNS, "addr", "add", f"{POD_ADDRESS}/24", "dev", "eth0"], timeout=10)
        run(["ip", "-n", NETNS, "link", "set", "eth0", "up"], timeout=10)
        run(["ip", "-n", NETNS, "link", "set", "lo", "up"], timeout=10)
        run(["ip", "addr", "add", f"{TEST_ADDRESS}/24", "dev", LINK], timeout=10)
        run(["ip", "link", "set", LINK, "up"], timeout=10)
        NETWORK_CONFIG.mkdir(parents=True, exist_ok=True)
        run(podman_here("network", "create", "--subnet", SUBNET, NETWORK), timeout=60)
        yield
    finally:
        remove_pod_leftovers()
        CONTAINERS_CONF.unlink(missing_ok=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def coreflow(namespace: None) -> AsyncIterator[Peer]:
    run(
        podman_here("run", *images.upstream_container(NETWORK, UPSTREAM_IP, UPSTREAM_PORT)),
        timeout=120,
    )
    peer = await Peer.spawn(podman_here("run", *images.coreflow_container(NETWORK)))
    try:
        yield peer
    finally:
        await peer.close()


def occupy_9180() -> subprocess.Popen[bytes]:
    """A listener on 0.0.0.0:9180 in the pod's namespace, as another exporter on the machine would hold it."""
    script = (
        "import socket, sys; s = socket.socket(); s.bind(('0.0.0.0', 9180)); s.listen(); "
        "print('listening', flush=True); sys.stdin.read()"
    )
    process = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{NETNS}", "python3", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == b"listening"
    return process


async def test_the_pod_plays_and_serves_what_coreflow_sends(coreflow: Peer) -> None:
    holder = occupy_9180()
    try:
        started = time.monotonic()
        played = run(podman_here("kube", "play", "--network", NETWORK, str(POD_FILE)), timeout=300, check=False)
        assert played.returncode == 0, f"podman kube play failed:\n{played.stdout}\n{played.stderr}"
        status = await coreflow.status(until_tagged=True, wait_s=120)
        assert status["tagged"], run(podman_here("logs", "coretraffic-driver"), timeout=30, check=False).stdout
        ca = DemoCA("pod test CA")
        set_ = route_set(ca, HOSTS, {})
        for config in set_["reverseConfigs"]:
            config["destinationIps"], config["destinationPorts"] = [UPSTREAM_IP], [UPSTREAM_PORT]
        reply = await coreflow.call("updateRouting", set_, wait_s=30, timeout_s=60)
        assert reply == OK
        with tempfile.TemporaryDirectory(prefix="ct-pod-") as name:
            ca_file = Path(name) / "ca.crt"
            ca_file.write_text(ca.certificate_pem)
            async with client(ca_file) as http:
                assert await serves_all(http, [POD_ADDRESS], HOSTS)  # `ok` means served: no waiting
        print(f"\n[engines] pod played, tagged and serving {time.monotonic() - started:.1f} s after kube play")
    finally:
        holder.kill()
        holder.wait()
