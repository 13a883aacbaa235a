"""deploy/swarm/stack.yml deployed on the suite's Swarm as an operator would: only what the stack's header says
to create (the secrets, the node labels, the external `coreflow` network), then `docker stack deploy` of the
file as shipped. Beside it, on the `coreflow` network: Coreflow's stand-in (the real TypedSocket server of
tests/peer in a container named `coreflow`, as the stack's CORETRAFFIC_COREFLOW_URL names it, driven over the
container's stdin and stdout) and an upstream for the routes (Python's http.server on a fixed address)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coretraffic.testing.admin_gate import MutualTLSFiles, write_mutual_tls
from coretraffic.testing.pki import DemoCA, IssuedCertificate
from tests.support.coreflow import Peer
from tests.support.engines import images
from tests.support.engines.images import BASE_IMAGE, PEER_IMAGE, REPO
from tests.support.engines.probe import PASSWORD, USER, Host
from tests.support.engines.swarm import Node, Swarm

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yml"
STACK = "coretraffic"
NETWORK_SUBNET = "10.78.0.0/24"
UPSTREAM_IP, UPSTREAM_PORT = "10.78.0.200", 8080
GATE_NAME = "tasks.caddy-admin"  # the name the driver dials the gates by (the stack's CORETRAFFIC_CADDY_ADMIN_DNS)


def header_commands() -> list[str]:
    """The operator's commands from the stack file's header comment, as written there."""
    lines = []
    for line in STACK_FILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        command = line.removeprefix("#").strip()
        if command.startswith("docker "):
            lines.append(re.split(r"\s{2,}", command)[0])
    return lines


def load_images(swarm: Swarm, directory: Path) -> None:
    """The project's image on every node (as an operator pushes it or loads it); Coreflow's stand-in and the
    upstream run on the manager only."""
    every = images.save_archive(directory / "project.tar", images.PROJECT_IMAGE)
    manager_only = images.save_archive(directory / "manager.tar", PEER_IMAGE, BASE_IMAGE)
    loads = [(node, every) for node in swarm.nodes] + [(swarm.manager, manager_only)]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(loads)) as pool:
            list(pool.map(lambda load: load[0].docker("load", "--quiet", "--input", str(load[1]), timeout=300), loads))
    finally:
        every.unlink(missing_ok=True)
        manager_only.unlink(missing_ok=True)


def operator_setup(swarm: Swarm, material: Path) -> MutualTLSFiles:
    """The header's commands, with this run's files and node names in place of the placeholders."""
    files = write_mutual_tls(material, DemoCA("operator admin CA"), GATE_NAME)
    sources = {
        "gate.crt": files.directory / "tls.crt",
        "gate.key": files.directory / "tls.key",
        "operator-ca.crt": files.ca,
        "driver.crt": files.driver_cert,
        "driver.key": files.driver_key,
    }
    manager = swarm.manager
    done = set()
    for command in header_commands():
        argv = command.split()[1:]
        if argv[:2] == ["node", "update"]:
            for node in swarm.nodes:
                manager.docker(*argv[:-1], node.name)
        elif argv[:2] == ["secret", "create"]:
            manager.docker(*argv[:-1], str(sources[argv[-1]]))
        elif argv[:2] == ["network", "create"]:
            # The network exists where Coreflow runs; here it is made as the header says, on a fixed subnet so
            # the test upstream can have a fixed address.
            manager.docker(*argv[:-1], "--subnet", NETWORK_SUBNET, argv[-1])
        elif argv[:2] == ["stack", "deploy"]:
            continue  # `deploy_stack`, once the stand-in runs
        elif argv[:1] == ["push"]:
            continue  # no registry here: `load_images` puts the image on every node
        else:
            raise AssertionError(f"the stack's header has a command the suite does not know: {command}")
        done.add(tuple(argv[:2]))
    assert {("node", "update"), ("secret", "create"), ("network", "create")} <= done, header_commands()
    return files


def deploy_stack(manager: Node) -> None:
    """As the header says, with the image every node was given in place of a registry's."""
    argv = manager.docker_argv("stack", "deploy", "--compose-file", str(STACK_FILE), STACK)
    images.run(argv, timeout=180, env={**os.environ, "CORETRAFFIC_IMAGE": images.PROJECT_IMAGE})


def start_upstream(manager: Node) -> None:
    manager.docker("run", *images.upstream_container("coreflow", UPSTREAM_IP, UPSTREAM_PORT))


async def start_coreflow(manager: Node) -> Peer:
    return await Peer.spawn(manager.docker_argv("run", *images.coreflow_container("coreflow")))


def route_set(ca: DemoCA, hosts: list[Host], issued_before: dict[str, IssuedCertificate]) -> dict[str, Any]:
    """Coreflow's wire format for `hosts`; a host's certificate is issued once (`issued_before`), so that sending
    the same hosts again is the same set (which Caddy already runs: no reload)."""
    configs = []
    for host in hosts:
        issued = issued_before.get(host.name) or issued_before.setdefault(host.name, ca.issue([host.name]))
        config: dict[str, Any] = {
            "hostName": host.name,
            "destinationIps": [UPSTREAM_IP],
            "destinationPorts": [UPSTREAM_PORT],
            "privateKey": issued.private_key_pem,
            "publicKey": issued.certificate_pem,
        }
        if host.auth:
            config["authentication"] = {"type": "Basic", "user": USER, "pass": PASSWORD}
        configs.append(config)
    return {"reverseConfigs": configs}


def stack_containers(node: Node) -> list[str]:
    return node.docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.stack.namespace={STACK}").stdout.split()


def task_container(swarm: Swarm, service: str, node: Node | None = None) -> tuple[Node, str]:
    """The running container of `service` (on `node`, for a global one): its node and container id."""
    for candidate in [node] if node else swarm.nodes:
        ids = candidate.docker("ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={STACK}_{service}")
        if ids.stdout.split():
            return candidate, ids.stdout.split()[0]
    raise AssertionError(f"no running container of {service}")


def driver_get(swarm: Swarm, path: str) -> str:
    """GET `path` of the driver's status server, inside its container (its port is not published); "" if none."""
    node, container = task_container(swarm, "coretraffic")
    url = f"http://127.0.0.1:9180{path}"
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=4).read().decode())"
    done = node.docker("exec", container, "python", "-c", script, check=False)
    return done.stdout if done.returncode == 0 else ""


def driver_status(swarm: Swarm) -> dict[str, Any]:
    text = driver_get(swarm, "/status")
    return json.loads(text) if text else {}


def service_log(manager: Node, service: str, lines: int = 60) -> str:
    done = manager.docker("service", "logs", "--raw", "--tail", str(lines), f"{STACK}_{service}", check=False)
    return (done.stdout + done.stderr)[-6000:]


@dataclass
class Deployment:
    swarm: Swarm
    coreflow: Peer
    ca: DemoCA
    ca_file: Path
    deployed_at: float = 0.0
    issued: dict[str, IssuedCertificate] = field(default_factory=dict)

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.swarm.nodes]

    def redeploy(self) -> None:
        deploy_stack(self.swarm.manager)
        self.deployed_at = time.monotonic()
