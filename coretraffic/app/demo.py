"""`coretraffic demo`: the driver on demo routes, with no Coreflow.

A throwaway CA (`testing.pki`) issues certificates for two demo hosts, a demo upstream (`testing.upstream`) says
who answered, and `run --routes` serves them from a routes file in the state directory.
"""

from __future__ import annotations

import json

from coretraffic.app.service import Driver, run_driver
from coretraffic.settings import Settings
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream

DEMO_HOSTS = ("app.example.test", "admin.example.test")


async def run_demo(settings: Settings) -> None:
    """`coretraffic demo`: demo routes in the state directory, then `run --routes` on them."""
    state_dir = settings.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = DemoCA()
    upstream = DemoUpstream().start()
    routes = [demo_route(ca, host, upstream.port) for host in DEMO_HOSTS]
    routes[1]["authentication"] = {"type": "Basic", "user": "demo", "pass": "demo"}
    ca_file = state_dir / "demo-ca.pem"
    ca_file.write_text(ca.certificate_pem)
    routes_file = state_dir / "demo-routes.json"
    routes_file.write_text(json.dumps(routes, indent=2))
    routes_file.chmod(0o600)

    async def announce(driver: Driver) -> None:
        (target,) = driver.targets
        result = await target.reconciler.wait_for_result()
        https, http = settings.https_port, settings.http_port
        host = DEMO_HOSTS[0]
        print(
            f"\ncoretraffic demo is serving ({result.summary()}).\n"
            f"  routes file (edit it, it is re-applied): {routes_file}\n"
            f"  HTTPS:  curl -i --cacert {ca_file} --resolve {host}:{https}:127.0.0.1 https://{host}:{https}/\n"
            f"  auth:   curl -i --cacert {ca_file} --resolve {DEMO_HOSTS[1]}:{https}:127.0.0.1 -u demo:demo "
            f"https://{DEMO_HOSTS[1]}:{https}/\n"
            f"  HTTP:   curl -i --resolve {host}:{http}:127.0.0.1 http://{host}:{http}/hello\n"
            "Stop with Ctrl-C.\n",
            flush=True,
        )

    try:
        await run_driver(settings.model_copy(update={"routes": routes_file}), on_started=announce)
    finally:
        upstream.stop()
