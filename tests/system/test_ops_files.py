"""The Containerfile and deploy/pod.yaml, checked without a container engine.

The image's ENTRYPOINT, ENV and HEALTHCHECK, and the pod's two container commands, are run here as they are
written (image paths mapped to the repository and to temp dirs, ports to free loopback ones): the wiring they
describe is tested for real, not only their syntax. The pod is also schema-checked (kubernetes-validate, with
the Kubernetes JSON schemas it bundles: no network).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from coretraffic import __version__
from coretraffic.settings import Settings, host_port
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support import paths
from tests.support.dataplane import serves
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
    for keyword, args in found:
        if keyword == "FROM":
            stage = Stage(base=args.split()[0])
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


def test_containerfile_declares_what_an_operator_relies_on() -> None:
    stage = final_stage()
    assert stage.base == "python:3.11-slim"
    assert stage.user.split(":")[0].isdigit() and int(stage.user.split(":")[0]) != 0, "numeric, non-root"
    assert stage.entrypoint == ["coretraffic", "run"]
    status_port = status_port_of(stage.env["CORETRAFFIC_STATUS_ADDR"])
    assert set(stage.exposed) == {7999, 8000, status_port}
    assert any(arg.endswith(f":{status_port}/healthz', timeout=4)") for arg in stage.healthcheck)
    assert stage.copies[stage.env["CORETRAFFIC_BASE_CONFIG"]] == "caddy/Caddyfile.base"
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
    assert {(p["hostPort"], p["containerPort"]) for p in caddy["ports"]} == {
        (80, defaults["http_port"].default),
        (443, defaults["https_port"].default),
    }
    env = {e["name"]: e["value"] for e in driver["env"]}
    (status,) = driver["ports"]
    assert status["containerPort"] == status_port_of(env["CORETRAFFIC_STATUS_ADDR"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert driver[probe]["httpGet"] == {"path": path, "port": status["name"]}
    assert str(pod()["spec"]["securityContext"]["runAsUser"]) == final_stage().user.split(":")[0]


def test_pod_hands_queued_connections_over_on_reloads() -> None:
    spec = pod()["spec"]
    assert {"name": "net.ipv4.tcp_migrate_req", "value": "1"} in spec["securityContext"]["sysctls"]
    assert not spec.get("hostNetwork"), "a network sysctl cannot be set on a pod in the node's network namespace"


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
        mounts = {m["mountPath"]: str(volumes[m["name"]]) for m in spec["volumeMounts"]}

        def remap(text: str) -> str:
            for mount, directory in mounts.items():
                text = directory if text == mount else text.replace(f"{mount}/", f"{directory}/")
            return text

        argv = [remap(arg) for arg in [*spec["command"], *spec.get("args", [])]]
        declared = {**stage.env, **{e["name"]: remap(e["value"]) for e in spec.get("env", [])}}
        return argv, run_env(declared, stage.copies)

    caddy_argv, caddy_env = local("caddy")
    driver_argv, driver_env = local("driver")
    status_port = free_port()
    driver_env.update(
        CORETRAFFIC_ROUTES=str(routes_json),  # instead of Coreflow
        CORETRAFFIC_HTTP_PORT=str(ports.http),
        CORETRAFFIC_HTTPS_PORT=str(ports.https),
        CORETRAFFIC_LISTEN_HOST="127.0.0.1",
        CORETRAFFIC_STATUS_ADDR=f"127.0.0.1:{status_port}",
        CORETRAFFIC_STATE_DIR=str(short_tmp / "driver-state"),
    )
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
