"""`coretraffic demo`: the driver on demo routes, with no Coreflow.

A CA of the demo's own (`testing.pki`, kept in the demo's state directory so that its `demo-ca.pem` stays
trusted across runs) issues certificates for two demo hosts, a demo upstream (`testing.upstream`) says who
answered, and `run --routes` serves them from a routes file in the state directory. `coretraffic demo --issue
HOST` prints a config for one more host, with a certificate from the same CA, to add to that file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coretraffic.app.service import Driver, run_driver
from coretraffic.errors import UsageError
from coretraffic.settings import Settings
from coretraffic.sources.private_file import write_private
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream

DEMO_HOSTS = ("app.example.test", "admin.example.test")
CA_FILE = "demo-ca.pem"
CA_KEY_FILE = "demo-ca-key.pem"
ROUTES_FILE = "demo-routes.json"


def demo_ca(state_dir: Path) -> DemoCA:
    """The demo's CA, made and saved (key 0600) in `state_dir` on first use."""
    certificate, key = state_dir / CA_FILE, state_dir / CA_KEY_FILE
    if certificate.is_file() and key.is_file():
        return DemoCA.from_pem(certificate.read_text(), key.read_text())
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = DemoCA()
    key.touch(mode=0o600)
    key.write_text(ca.private_key_pem)
    certificate.write_text(ca.certificate_pem)
    return ca


def issued_route(state_dir: Path, host: str) -> dict[str, Any]:
    """`demo --issue HOST`: a config for `host` with a certificate from the demo's CA, proxied to the demo's
    upstream (its port changes with every start: the one in the routes file the running demo wrote), or to
    127.0.0.1:8080 when no demo has written one."""
    return _route(demo_ca(state_dir), host, _demo_upstream_port(state_dir / ROUTES_FILE))


def add_route(state_dir: Path, config: dict[str, Any]) -> Path:
    """`demo --issue HOST --add`: `config` added to the demo's routes file (in place of one for the same host),
    which is replaced whole, so a running demo never reads half of it. UsageError: there is no such file yet."""
    routes_file = state_dir / ROUTES_FILE
    try:
        routes = json.loads(routes_file.read_text())
    except (OSError, ValueError):
        raise UsageError(f"no demo routes file to add to at {routes_file}: start `coretraffic demo` first") from None
    kept = [r for r in routes if not (isinstance(r, dict) and r.get("hostName") == config["hostName"])]
    write_private(routes_file, json.dumps([*kept, config], indent=2).encode())
    return routes_file


def _demo_upstream_port(routes_file: Path) -> int:
    try:
        port = json.loads(routes_file.read_text())[0]["destinationPorts"][0]
    except (OSError, ValueError, LookupError, TypeError):
        return 8080
    return port if isinstance(port, int) else 8080


def _route(ca: DemoCA, host: str, upstream_port: int) -> dict[str, Any]:
    """A demo host whose chain ends with the demo's root: as a private CA's chains should, so that the chain
    reaches a root without the root being among the system's (`check` would warn, `core.trust`)."""
    config = demo_route(ca, host, upstream_port)
    config["publicKey"] += ca.certificate_pem
    return config


async def run_demo(settings: Settings) -> None:
    """`coretraffic demo`: demo routes in the state directory, then `run --routes` on them."""
    state_dir = settings.state_dir
    ca = demo_ca(state_dir)
    upstream = DemoUpstream().start()
    routes = [_route(ca, host, upstream.port) for host in DEMO_HOSTS]
    routes[1]["authentication"] = {"type": "Basic", "user": "demo", "pass": "demo"}
    routes_file = state_dir / ROUTES_FILE
    routes_file.touch(mode=0o600)
    routes_file.write_text(json.dumps(routes, indent=2))
    ca_file = state_dir / CA_FILE

    async def announce(driver: Driver) -> None:
        (target,) = driver.targets
        result = await target.reconciler.wait_for_result()
        https, http = settings.https_port, settings.http_port
        host = DEMO_HOSTS[0]
        listen = settings.listen_host or "127.0.0.1"
        print(
            f"\ncoretraffic demo is serving ({result.summary()}).\n"
            f"  routes file (edit it, it is re-applied): {routes_file}\n"
            f"  HTTPS:  curl -i --cacert {ca_file} --resolve {host}:{https}:{listen} https://{host}:{https}/\n"
            f"  auth:   curl -i --cacert {ca_file} --resolve {DEMO_HOSTS[1]}:{https}:{listen} -u demo:demo "
            f"https://{DEMO_HOSTS[1]}:{https}/\n"
            f"  HTTP:   curl -i --resolve {host}:{http}:{listen} http://{host}:{http}/hello\n"
            f"          (a 301 to https://{host}/hello: port 443, as production maps 443 to {https}; nothing\n"
            "          listens there in the demo, so following the redirect fails)\n"
            f"  a host more: coretraffic demo --issue new.example.test  (prints a config to add to the routes file)\n"
            "Stop with Ctrl-C.\n",
            flush=True,
        )

    try:
        await run_driver(settings.model_copy(update={"routes": routes_file}), on_started=announce, advise_sysctl=False)
    finally:
        upstream.stop()
