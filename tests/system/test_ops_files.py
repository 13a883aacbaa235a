"""The Containerfile, deploy/pod.yaml and the fleet deployments (deploy/kubernetes, deploy/swarm), checked without
a container engine or a cluster.

The image's ENTRYPOINT, ENV and HEALTHCHECK, and the pod's two container commands, are run here as they are
written (image paths mapped to the repository and to temp dirs, ports to free loopback ones): the wiring they
describe is tested for real, not only their syntax. The pod is also schema-checked (kubernetes-validate, with
the Kubernetes JSON schemas it bundles: no network), and so are the Kubernetes files; the Swarm stack is checked
against the Compose specification's JSON schema and against the Compose 3.x schema `docker stack deploy` applies
(both vendored in tests/testdata with their licences).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from coretraffic import __version__
from coretraffic.caddy.process import find_caddy_binary
from coretraffic.settings import Settings, host_port
from coretraffic.testing.admin_gate import gate_config, running_gate, write_mutual_tls
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support import paths
from tests.support.dataplane import serves
from tests.support.dns import Dnsmasq
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until

REPO = paths.REPO
OCI_LABELS = ("title", "description", "version", "licenses")


@dataclass
class Stage:
    """The last stage of the Containerfile: what the image is when it runs."""

    base: str
    env: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)  # image path -> repository path
    labels: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    user: str = ""
    volumes: list[str] = field(default_factory=list)
    exposed: list[int] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    logical = code.replace("\\\n", " ")
    found = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def final_stage(path: Path = REPO / "Containerfile") -> Stage:
    found = instructions(path.read_text())
    assert [keyword for keyword, _ in found].count("FROM") >= 2, "a multi-stage build"
    stage = Stage(base="")
    global_args: dict[str, str] = {}  # ARGs before the first FROM: usable in FROM lines only
    for keyword, args in found:
        if keyword == "ARG" and not stage.base:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            stage = Stage(base=_expand(args.split()[0], global_args))
        elif keyword == "ARG":
            name, _, default = args.partition("=")
            stage.args[name] = default
        elif keyword in ("ENV", "LABEL"):
            target = stage.env if keyword == "ENV" else stage.labels
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                target[name] = _expand(value, {**stage.args, **stage.env})
        elif keyword == "COPY" and not args.startswith("--from"):
            *sources, destination = args.split()
            stage.copies[destination] = " ".join(sources)
        elif keyword == "USER":
            stage.user = args
        elif keyword == "VOLUME":
            stage.volumes.extend(json.loads(args))
        elif keyword == "EXPOSE":
            stage.exposed.extend(int(port) for port in args.split())
        elif keyword == "HEALTHCHECK":
            stage.healthcheck = json.loads(args.partition(" CMD ")[2])
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = json.loads(args)
        elif keyword == "CMD":
            stage.cmd = json.loads(args)
    return stage


def _expand(value: str, variables: dict[str, str]) -> str:
    # Only variables the Containerfile itself defines; $PATH and the like stay for the runtime to fill.
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def run_env(declared: dict[str, str], copies: dict[str, str], **overrides: str) -> dict[str, str]:
    """The declared environment on this machine: $PATH from here (this venv first), image files from the repo."""
    here = {k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")}
    here["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**here, **{k: copies.get(v, v) for k, v in declared.items()}}
    env["PATH"] = _expand(env["PATH"], here)
    for name, value in env.items():
        if value in copies:
            env[name] = str(REPO / copies[value])
    return {**env, **overrides}


def status_port_of(address: str) -> int:
    return host_port(address)[1]


async def http_status(port: int, path: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}{path}")).status_code
        except httpx.TransportError:
            return 0


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


@pytest.fixture
def routes_json(short_tmp: Path, ca: DemoCA, upstream: DemoUpstream) -> Path:
    path = short_tmp / "routes.json"
    path.write_text(json.dumps([demo_route(ca, "app.example.test", upstream.port)]))
    return path


# -- Containerfile -------------------------------------------------------------------------------------------


def test_the_build_context_is_what_the_containerfile_copies() -> None:
    # .dockerignore excludes everything, then lets in each path the Containerfile copies: a venv, node_modules
    # or git history never goes to the engine (the engine suite builds the image from this context for real).
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    let_in = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for keyword, args in instructions((REPO / "Containerfile").read_text())
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert {path.split("/")[0] for path in copied} <= let_in, "a copied path is left out of the build context"
    assert let_in <= {path.split("/")[0] for path in copied}, "a path no COPY needs is sent to the engine"


def test_containerfile_declares_what_an_operator_relies_on() -> None:
    stage = final_stage()
    assert stage.base == "python:3.11-slim"
    assert stage.user.split(":")[0].isdigit() and int(stage.user.split(":")[0]) != 0, "numeric, non-root"
    assert stage.entrypoint == ["coretraffic", "run"]
    status_port = status_port_of(stage.env["CORETRAFFIC_STATUS_ADDR"])
    caddy_metrics = stage.env["CORETRAFFIC_CADDY_METRICS_LISTEN"]
    assert caddy_metrics.startswith("0.0.0.0:"), "Caddy's metrics reachable from outside the container"
    assert set(stage.exposed) == {7999, 8000, status_port, status_port_of(caddy_metrics)}
    assert any(arg.endswith(f":{status_port}/healthz', timeout=4)") for arg in stage.healthcheck)
    assert stage.copies[stage.env["CORETRAFFIC_BASE_CONFIG"]] == "coretraffic/caddy/Caddyfile.base"
    assert any(Path(stage.env["CORETRAFFIC_STATE_DIR"]).is_relative_to(volume) for volume in stage.volumes)
    assert stage.args["VERSION"] == __version__
    assert all(stage.labels.get(f"org.opencontainers.image.{name}") for name in OCI_LABELS)
    settings = {f"CORETRAFFIC_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in stage.env if k.startswith("CORETRAFFIC_")} <= settings, "a misspelt setting is ignored"


async def test_image_entrypoint_runs_and_its_healthcheck_passes(
    short_tmp: Path, ports: Ports, routes_json: Path, ca: DemoCA
) -> None:
    stage = final_stage()
    status_port = free_port()
    image_status_port = status_port_of(stage.env["CORETRAFFIC_STATUS_ADDR"])
    env = run_env(
        stage.env,
        stage.copies,
        CORETRAFFIC_STATE_DIR=str(short_tmp / "state"),
        CORETRAFFIC_ROUTES=str(routes_json),
        CORETRAFFIC_HTTP_PORT=str(ports.http),
        CORETRAFFIC_HTTPS_PORT=str(ports.https),
        CORETRAFFIC_LISTEN_HOST="127.0.0.1",
        CORETRAFFIC_STATUS_ADDR=f"127.0.0.1:{status_port}",
        CORETRAFFIC_CADDY_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
    )
    healthcheck = [arg.replace(f":{image_status_port}/", f":{status_port}/") for arg in stage.healthcheck]
    process = subprocess.Popen([*stage.entrypoint, *stage.cmd], env=env, stderr=subprocess.DEVNULL)
    try:

        async def healthy() -> bool:
            return subprocess.run(healthcheck, env=env, capture_output=True, timeout=10).returncode == 0

        await wait_until(healthy, 30, "the HEALTHCHECK command to pass")
        await wait_until(lambda: serves(ca, ports.https, "app.example.test"), 30, "the route served")
        assert await http_status(status_port, "/readyz") == 200
    finally:
        assert stop(process) == 0
    assert subprocess.run(healthcheck, env=env, capture_output=True, timeout=10).returncode != 0


# -- deploy/pod.yaml -----------------------------------------------------------------------------------------


def pod() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "pod.yaml").read_text())
    return document


def container(name: str) -> dict[str, Any]:
    (found,) = [c for c in pod()["spec"]["containers"] if c["name"] == name]
    result: dict[str, Any] = found
    return result


def test_pod_passes_the_kubernetes_schema() -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(pod(), version, strict=True)  # raises on any error, unknown fields included
    broken = pod()
    broken["spec"]["containers"][0]["ports"][0]["hostPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_pod_wires_caddy_driver_ports_and_probes() -> None:
    caddy, driver = container("caddy"), container("driver")
    script = " ".join(caddy["args"])
    bootstrap = json.loads(re.search(r"'(\{.*\})'", script).group(1))  # type: ignore[union-attr]
    assert "caddy run --resume --config" in script
    admin = driver["args"][driver["args"].index("--caddy-admin") + 1]
    assert bootstrap["admin"]["listen"] == admin
    shared = {m["mountPath"] for c in (caddy, driver) for m in c["volumeMounts"] if m["name"] == "shared"}
    assert len(shared) == 1 and admin.startswith(f"unix/{shared.pop()}/")
    defaults = Settings.model_fields
    published = {(p["hostPort"], p["containerPort"]) for p in caddy["ports"] if "hostPort" in p}
    assert published == {(80, defaults["http_port"].default), (443, defaults["https_port"].default)}
    env = {e["name"]: e["value"] for e in driver["env"]}
    # Neither Caddy's metrics nor the status server are declared ports: podman kube play would publish them on the
    # host (tests/engines/test_pod.py). Caddy's metrics listen on the pod's address, where the driver renders them.
    assert [p["name"] for p in caddy["ports"]] == ["http", "https"]
    assert status_port_of(env["CORETRAFFIC_CADDY_METRICS_LISTEN"]) == 9181
    assert "ports" not in driver
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert driver[probe]["httpGet"] == {"path": path, "port": status_port_of(env["CORETRAFFIC_STATUS_ADDR"])}
    assert str(pod()["spec"]["securityContext"]["runAsUser"]) == final_stage().user.split(":")[0]


def test_pod_hands_queued_connections_over_on_reloads() -> None:
    spec = pod()["spec"]
    assert {"name": "net.ipv4.tcp_migrate_req", "value": "1"} in spec["securityContext"]["sysctls"]
    assert not spec.get("hostNetwork"), "a network sysctl cannot be set on a pod in the node's network namespace"


def remapper(spec: dict[str, Any], dirs: dict[str, Path]) -> Callable[[str], str]:
    """A container's paths rewritten onto the temp dirs that stand for its volumes (by volume name)."""
    mounts = {m["mountPath"]: str(dirs[m["name"]]) for m in spec["volumeMounts"]}

    def remap(text: str) -> str:
        for mount, directory in mounts.items():
            text = directory if text == mount else text.replace(f"{mount}/", f"{directory}/")
        return text

    return remap


def local_driver_env(routes_json: Path, ports: Ports, status_port: int, state_dir: Path) -> dict[str, str]:
    """What a driver container run here takes instead of the cluster's: a routes file, free loopback ports."""
    return {
        "CORETRAFFIC_ROUTES": str(routes_json),  # instead of Coreflow
        "CORETRAFFIC_HTTP_PORT": str(ports.http),
        "CORETRAFFIC_HTTPS_PORT": str(ports.https),
        "CORETRAFFIC_LISTEN_HOST": "127.0.0.1",
        "CORETRAFFIC_STATUS_ADDR": f"127.0.0.1:{status_port}",
        "CORETRAFFIC_STATE_DIR": str(state_dir),
    }


async def test_pod_containers_run_together_as_written(
    short_tmp: Path, ports: Ports, routes_json: Path, ca: DemoCA
) -> None:
    """Both containers' commands, their volumes as temp dirs: the driver reaches Caddy through the shared socket."""
    stage = final_stage()
    volumes = {v["name"]: short_tmp / v["name"] for v in pod()["spec"]["volumes"]}
    for directory in volumes.values():
        directory.mkdir()

    def local(name: str) -> tuple[list[str], dict[str, str]]:
        spec = container(name)
        remap = remapper(spec, volumes)
        argv = [remap(arg) for arg in [*spec["command"], *spec.get("args", [])]]
        declared = {**stage.env, **{e["name"]: remap(e["value"]) for e in spec.get("env", [])}}
        return argv, run_env(declared, stage.copies)

    caddy_argv, caddy_env = local("caddy")
    driver_argv, driver_env = local("driver")
    status_port = free_port()
    driver_env.update(local_driver_env(routes_json, ports, status_port, short_tmp / "driver-state"))
    caddy = subprocess.Popen(caddy_argv, env=caddy_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = subprocess.Popen(driver_argv, env=driver_env, stderr=subprocess.DEVNULL)
    try:
        await wait_until(lambda: _is(200, status_port, "/readyz"), 30, "the readiness probe to pass")
        assert await http_status(status_port, "/healthz") == 200
        assert await serves(ca, ports.https, "app.example.test")
        autosave = volumes["caddy-state"] / "config" / "caddy" / "autosave.json"
        assert autosave.is_file(), "Caddy keeps its autosave on the caddy-state volume"
        stop(caddy)
        await wait_until(lambda: _is(503, status_port, "/healthz"), 15, "the liveness probe to fail without Caddy")
    finally:
        assert stop(driver) == 0
        stop(caddy)


async def _is(expected: int, port: int, path: str) -> bool:
    return await http_status(port, path) == expected


# -- deploy/kubernetes and deploy/swarm: one driver, a Caddy and its admin gate per edge node ----------------

ADMIN_GATE = REPO / "deploy" / "admin-gate.json"


def kubernetes_documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((REPO / "deploy" / "kubernetes").glob("*.yaml")):
        found.extend(document for document in yaml.safe_load_all(path.read_text()) if document)
    return found


def kubernetes(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in kubernetes_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    result: dict[str, Any] = found
    return result


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in spec.get("env", [])}


def bootstrap_listen(script: str) -> str:
    bootstrap = json.loads(re.search(r"'(\{.*\})'", script).group(1))  # type: ignore[union-attr]
    listen: str = bootstrap["admin"]["listen"]
    return listen


def test_kubernetes_files_pass_the_kubernetes_schema() -> None:
    version = kubernetes_validate.latest_version()
    documents = kubernetes_documents()
    assert {d["kind"] for d in documents} == {"ConfigMap", "DaemonSet", "Service", "NetworkPolicy", "Deployment"}
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    broken = kubernetes("Service", "caddy-admin")
    broken["spec"]["publishNotReadyAdresses"] = True  # misspelt: strict mode refuses unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_wires_caddy_its_gate_discovery_and_the_driver() -> None:
    caddy_set, driver_set = kubernetes("DaemonSet", "caddy"), kubernetes("Deployment", "coretraffic-driver")
    caddy, gate, driver = pod_container(caddy_set, "caddy"), pod_container(caddy_set, "admin-gate"), None
    driver = pod_container(driver_set, "driver")
    gate_json = json.loads(kubernetes("ConfigMap", "admin-gate")["data"]["admin-gate.json"])
    assert gate_json == json.loads(ADMIN_GATE.read_text()), "the ConfigMap is deploy/admin-gate.json"
    # The gate dials the socket Caddy boots with, and every load the driver sends keeps it there.
    own_listen = bootstrap_listen(" ".join(caddy["args"]))
    (upstream,) = gate_json["apps"]["http"]["servers"]["admin_gate"]["routes"][0]["handle"][0]["upstreams"]
    assert upstream["dial"] == own_listen == env_of(driver)["CORETRAFFIC_REMOTE_ADMIN_LISTEN"]
    assert {m["mountPath"] for m in caddy["volumeMounts"]} >= {"/shared"}
    assert {m["name"]: m["mountPath"] for m in gate["volumeMounts"]}["shared"] == "/shared"
    # The gate reads its certificate, key and client CA where the Secret is mounted.
    volumes = {v["name"]: v for v in caddy_set["spec"]["template"]["spec"]["volumes"]}
    tls_mount = {m["name"]: m["mountPath"] for m in gate["volumeMounts"]}["admin-gate-tls"]
    assert volumes["admin-gate-tls"]["secret"]["secretName"] == "caddy-admin-gate-tls"
    assert all(path.startswith(f"{tls_mount}/") for path in _gate_files(gate_json))
    # Discovery: a headless Service over the Caddy pods, listing them before they are ready.
    service = kubernetes("Service", "caddy-admin")
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= caddy_set["spec"]["template"]["metadata"]["labels"].items()
    (admin_port,) = service["spec"]["ports"]
    gate_port = int(gate_json["apps"]["http"]["servers"]["admin_gate"]["listen"][0].rpartition(":")[2])
    assert admin_port["port"] == gate_port == gate["ports"][0]["containerPort"]
    assert env_of(driver)["CORETRAFFIC_CADDY_ADMIN_DNS"] == f"https://{service['metadata']['name']}:{gate_port}"
    # The driver: one, never two at once, with its material from a Secret and every setting a real one.
    assert driver_set["spec"]["replicas"] == 1 and driver_set["spec"]["strategy"]["type"] == "Recreate"
    settings = {f"CORETRAFFIC_{name.upper()}" for name in Settings.model_fields}
    assert set(env_of(driver)) <= settings
    mount = {m["name"]: m["mountPath"] for m in driver["volumeMounts"]}["driver-tls"]
    for name in ("ADMIN_CLIENT_CERT", "ADMIN_CLIENT_KEY", "ADMIN_CA"):
        assert env_of(driver)[f"CORETRAFFIC_{name}"].startswith(f"{mount}/")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert driver[probe]["httpGet"]["path"] == path
    assert caddy["readinessProbe"] and caddy["livenessProbe"] and gate["livenessProbe"]
    assert {(p["hostPort"], p["containerPort"]) for p in caddy["ports"] if "hostPort" in p} == {(80, 7999), (443, 8000)}
    (metrics,) = [p for p in caddy["ports"] if p["name"] == "caddy-metrics"]
    assert metrics["containerPort"] == status_port_of(env_of(driver)["CORETRAFFIC_CADDY_METRICS_LISTEN"])


def _gate_files(gate_json: dict[str, Any]) -> list[str]:
    (pair,) = gate_json["apps"]["tls"]["certificates"]["load_files"]
    policy = gate_json["apps"]["http"]["servers"]["admin_gate"]["tls_connection_policies"][0]
    return [pair["certificate"], pair["key"], *policy["client_authentication"]["ca"]["pem_files"]]


def test_kubernetes_lets_only_the_driver_reach_the_admin_gates() -> None:
    policy = kubernetes("NetworkPolicy", "caddy-admin-from-the-driver-only")["spec"]
    caddy_labels = kubernetes("DaemonSet", "caddy")["spec"]["template"]["metadata"]["labels"]
    driver_labels = kubernetes("Deployment", "coretraffic-driver")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= caddy_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    open_rules = [rule for rule in policy["ingress"] if "from" not in rule]
    gate_rules = [rule for rule in policy["ingress"] if any(p["port"] == 2021 for p in rule["ports"])]
    assert all(p["port"] in (7999, 8000) for rule in open_rules for p in rule["ports"]), "only the data plane is open"
    (gate_rule,) = gate_rules
    (source,) = gate_rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= driver_labels.items()
    assert not source["podSelector"]["matchLabels"].items() <= caddy_labels.items()


def test_kubernetes_caddies_hand_queued_connections_over_on_reloads() -> None:
    spec = kubernetes("DaemonSet", "caddy")["spec"]["template"]["spec"]
    assert {"name": "net.ipv4.tcp_migrate_req", "value": "1"} in spec["securityContext"]["sysctls"]
    assert not spec.get("hostNetwork"), "a network sysctl cannot be set on a pod in the node's network namespace"
    text = (REPO / "deploy" / "kubernetes" / "caddy.yaml").read_text()
    assert "--allowed-unsafe-sysctls=net.ipv4.tcp_migrate_req" in text  # what the kubelet must allow


def swarm_stack() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "swarm" / "stack.yml").read_text())
    return document


def compose_schema_validators() -> dict[str, jsonschema.protocols.Validator]:
    """The Compose specification's schema, and the legacy 3.x schema that `docker stack deploy` itself applies."""
    testdata = REPO / "tests" / "testdata"
    specification = json.loads((testdata / "compose-spec" / "compose-spec.json").read_text())
    stack_version = swarm_stack()["version"]
    docker_stack = json.loads((testdata / "docker-stack" / f"config_schema_v{stack_version}.json").read_text())
    return {
        "compose specification": jsonschema.Draft7Validator(specification),
        f"docker stack, {stack_version}": jsonschema.Draft4Validator(docker_stack),
    }


def test_swarm_stack_passes_the_compose_schemas() -> None:
    for name, validator in compose_schema_validators().items():
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(swarm_stack())]
        assert errors == [], name
        broken = swarm_stack()
        broken["services"]["caddy"]["deploy"]["placment"] = broken["services"]["caddy"]["deploy"].pop("placement")
        assert list(validator.iter_errors(broken)), f"the {name} check can fail"


def test_swarm_wires_caddy_its_gate_discovery_and_the_driver() -> None:
    stack = swarm_stack()
    caddy, gate, driver = (stack["services"][name] for name in ("caddy", "caddy-admin", "coretraffic"))
    for edge in (caddy, gate):
        assert edge["deploy"]["mode"] == "global"
    assert caddy["deploy"]["placement"] == gate["deploy"]["placement"], "a gate beside every Caddy"
    assert driver["deploy"]["replicas"] == 1
    # Swarm runs a service's entrypoint (the image's unless set) followed by its command (the image's CMD unless
    # set): the driver must run exactly the image's `coretraffic run`, not `coretraffic run coretraffic run`.
    stage = final_stage()
    argv = [*driver.get("entrypoint", stage.entrypoint), *driver.get("command", stage.cmd)]
    assert argv == ["coretraffic", "run"]
    assert {(p["published"], p["target"], p["mode"]) for p in caddy["ports"]} == {
        (80, 7999, "host"),
        (443, 8000, "host"),
    }
    # The gate is deploy/admin-gate.json; it dials the socket Caddy boots with, through a volume they share.
    ((config_name, config),) = stack["configs"].items()
    assert (REPO / "deploy" / "swarm" / config["file"]).resolve() == ADMIN_GATE
    gate_json = json.loads(ADMIN_GATE.read_text())
    own_listen = bootstrap_listen(" ".join(caddy["command"]))
    upstream = gate_json["apps"]["http"]["servers"]["admin_gate"]["routes"][0]["handle"][0]["upstreams"][0]
    assert upstream["dial"] == own_listen == driver["environment"]["CORETRAFFIC_REMOTE_ADMIN_LISTEN"]
    socket_dir = own_listen.removeprefix("unix/").rpartition("/")[0]
    assert f"admin-socket:{socket_dir}" in caddy["volumes"] and f"admin-socket:{socket_dir}" in gate["volumes"]
    assert gate["configs"] == [{"source": config_name, "target": gate["entrypoint"][-1]}]
    assert sorted(s["target"] for s in gate["secrets"]) == sorted(_gate_files(gate_json))
    # Discovery through Swarm's DNS: tasks.<the gate's service> on the gate's port, over the shared network.
    gate_port = int(gate_json["apps"]["http"]["servers"]["admin_gate"]["listen"][0].rpartition(":")[2])
    assert driver["environment"]["CORETRAFFIC_CADDY_ADMIN_DNS"] == f"https://tasks.caddy-admin:{gate_port}"
    assert set(gate["networks"]) & set(driver["networks"])
    settings = {f"CORETRAFFIC_{name.upper()}" for name in Settings.model_fields}
    assert set(driver["environment"]) <= settings
    secret_targets = {s["target"] for s in driver["secrets"]}
    for name in ("ADMIN_CLIENT_CERT", "ADMIN_CLIENT_KEY", "ADMIN_CA"):
        assert driver["environment"][f"CORETRAFFIC_{name}"] in secret_targets


async def test_kubernetes_caddy_pod_and_driver_run_together_as_written(
    short_tmp: Path, ports: Ports, routes_json: Path, ca: DemoCA
) -> None:
    """The Caddy pod's two containers and the driver's, their volumes and Secrets as temp dirs, the gate on a free
    loopback port, the headless Service's name answered by a dnsmasq of the test's: the driver finds the gate by
    that name, loads the routes through it over mutual TLS and Caddy serves them."""
    stage = final_stage()
    caddy_set, driver_set = kubernetes("DaemonSet", "caddy"), kubernetes("Deployment", "coretraffic-driver")
    volumes = {v["name"]: short_tmp / v["name"] for v in caddy_set["spec"]["template"]["spec"]["volumes"]}
    for directory in volumes.values():
        directory.mkdir()
    service = kubernetes("Service", "caddy-admin")["metadata"]["name"]
    # The gates' certificate carries the Service's name, as docs/operate/deploy.md has it issued.
    files = write_mutual_tls(volumes["admin-gate-tls"], DemoCA("operator admin CA"), service)
    driver_tls = short_tmp / "driver-tls"
    driver_tls.mkdir()
    for key, source in (("tls.crt", files.driver_cert), ("tls.key", files.driver_key), ("ca.crt", files.ca)):
        (driver_tls / key).write_text(source.read_text())

    caddy = pod_container(caddy_set, "caddy")
    remap = remapper(caddy, volumes)
    caddy_argv = [remap(arg) for arg in [*caddy["command"], *caddy["args"]]]
    caddy_env = run_env({**stage.env, **{k: remap(v) for k, v in env_of(caddy).items()}}, stage.copies)
    gate_port = free_port()
    gate_json = json.loads(kubernetes("ConfigMap", "admin-gate")["data"]["admin-gate.json"])
    own_socket = f"unix/{volumes['shared']}/admin.sock"
    gate_config_now = gate_config(gate_json, port=gate_port, admin_socket=own_socket, files=files)

    driver = pod_container(driver_set, "driver")
    remap_driver = remapper(driver, {"driver-tls": driver_tls})
    driver_env = run_env({**stage.env, **{k: remap_driver(v) for k, v in env_of(driver).items()}}, stage.copies)
    status_port = free_port()
    dns = Dnsmasq(short_tmp)
    discovered = driver_env["CORETRAFFIC_CADDY_ADMIN_DNS"]
    driver_env.update(
        CORETRAFFIC_CADDY_ADMIN_DNS=f"{discovered.rpartition(':')[0]}:{gate_port}",  # the free port, not 2021
        CORETRAFFIC_CADDY_ADMIN_DNS_SERVER=f"127.0.0.1:{dns.port}",  # instead of the cluster's DNS
        CORETRAFFIC_REMOTE_ADMIN_LISTEN=own_socket,  # the pod's /shared, here a temp dir
        **local_driver_env(routes_json, ports, status_port, short_tmp / "driver-state"),
    )
    caddy_process = subprocess.Popen(caddy_argv, env=caddy_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await dns.start({service: "127.0.0.1"})
        with running_gate(find_caddy_binary(), gate_config_now, gate_port, short_tmp / "gate.json"):
            driver_process = subprocess.Popen(driver["command"], env=driver_env, stderr=subprocess.DEVNULL)
            try:
                await wait_until(lambda: _is(200, status_port, "/readyz"), 30, "the driver ready")
                assert await serves(ca, ports.https, "app.example.test")
            finally:
                assert stop(driver_process) == 0
    finally:
        stop(caddy_process)
        await dns.stop()


# -- every shipped deployment: an image an operator replaces, and resources sized from the measurements -------


def test_each_deployment_names_an_image_to_replace_and_sizes_each_container() -> None:
    pods = [
        pod()["spec"],
        *(d["spec"]["template"]["spec"] for d in kubernetes_documents() if "template" in d.get("spec", {})),
    ]
    containers = [c for spec in pods for c in spec["containers"]]
    # Kubernetes: a registry's reference at this version (a local name would pull nowhere on a cluster's node);
    # the pod keeps podman's local name, as it runs where the image is built.
    assert {c["image"] for c in containers} == {
        "localhost/coretraffic:latest",
        f"registry.example.com/serve.zone/coretraffic:{__version__}",
    }
    for container in containers:
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"memory"}
    services = swarm_stack()["services"].values()
    # Swarm: no default at all: the stack does not deploy until CORETRAFFIC_IMAGE names a registry's image.
    assert {s["image"] for s in services} == {
        "${CORETRAFFIC_IMAGE:?set CORETRAFFIC_IMAGE to the coretraffic image in a registry every node pulls from}"
    }
    for service in services:
        resources = service["deploy"]["resources"]
        assert set(resources["reservations"]) == {"cpus", "memory"} and set(resources["limits"]) == {"memory"}
