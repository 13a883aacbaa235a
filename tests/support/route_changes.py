"""Route changes under real traffic, through the driver's reconciler and a spawned Caddy.

One run: an echo upstream (WebSocket and plain GET), a Caddy spawned as `coretraffic run` spawns it, the
reconciler applying `changes` different route sets (crossing the flat/bucket layout line), and three kinds of
client through Caddy over TLS with SNI, all at once:

- `websockets` WebSockets opened before the first change, each asked to echo after the last;
- new-connection clients over HTTP/1.1 and HTTP/2 (a connection per request, nothing retried), failures by kind;
- keep-alive clients that retry once what a browser retries (a reused connection closed before any response);
  a request that had to open a connection meets what new-connection clients meet, and is counted apart.

`python -m tests.support.route_changes [--changes N] [--netns 0|1]` prints the figures as JSON; `--netns V`
runs it in a network namespace of its own with `net.ipv4.tcp_migrate_req=V` (root), which is how
`tests/reliability/test_route_changes_in_netns.py` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.continuity import NewConnectionClients, client_tls, echo_upstream, echoes, open_websocket
from benchmarks.harness import Bed
from benchmarks.netns import in_own_netns, netns_problem
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import render, with_admin_listen
from coretraffic.core.validate import Route
from coretraffic.observe.listener_handover import read_tcp_migrate_req
from coretraffic.reconcile.reconciler import Reconciler
from tests.support.caddy import validated
from tests.support.load import LoadClient

WS_HOST = "ws.continuity.test"
APP_HOST = "app.continuity.test"


@dataclass(frozen=True)
class RouteChanges:
    changes: int
    loads: int
    websockets_opened: int
    websockets_echoing: int
    new_connection_ok: dict[str, int]  # by protocol
    new_connection_failures: dict[str, dict[str, int]]  # by protocol, then by kind
    keep_alive_ok: int
    keep_alive_retried: int
    keep_alive_failures: dict[str, int]  # on connections that had served a request before
    keep_alive_fresh_failures: dict[str, int]  # on connections opened for the request (as new-connection ones)
    tcp_migrate_req: str


async def route_changes(changes: int, websockets: int, workers: int) -> RouteChanges:
    with tempfile.TemporaryDirectory(prefix="ct-changes-") as tmp:
        caddy = CaddyProcess(Path(tmp) / "state")
        await caddy.start()
        admin = CaddyAdmin(caddy.admin_address)
        try:
            async with echo_upstream() as echo_port:
                bed = Bed(caddy, admin, [echo_port])

                def renderer(routes: Sequence[Route]) -> JSON:
                    config = render(routes, bed.settings, BaseConfig(), bed.hasher)
                    return with_admin_listen(config, caddy.admin_address.listen)

                reconciler = Reconciler(admin, renderer)
                task = asyncio.create_task(reconciler.run())
                try:
                    figures = await _under_traffic(bed, reconciler, changes, websockets, workers)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        finally:
            await admin.aclose()
            await caddy.stop()
    return RouteChanges(**figures, tcp_migrate_req=read_tcp_migrate_req())


async def _under_traffic(
    bed: Bed, reconciler: Reconciler, changes: int, websockets: int, workers: int
) -> dict[str, Any]:
    pool = [f"r{i:03}.continuity.test" for i in range(60)]
    kept = bed.configs([WS_HOST, APP_HOST])

    def route_set(n: int) -> list[dict[str, Any]]:
        size = 5 + 10 * (n % 3)  # 5, 15, 25 extra hosts: across the 16-host flat/bucket line
        start = (n * 7) % (len(pool) - size)
        return [*kept, *bed.configs(pool[start : start + size])]

    first = await reconciler.submit(validated(route_set(0)))
    assert first.outcome == "applied", first.summary()
    loads_before = reconciler.loads
    tls = client_tls(bed)
    sockets = [await open_websocket(bed, WS_HOST, tls) for _ in range(websockets)]
    url = f"https://127.0.0.1:{bed.https_port}/"
    fresh = {
        "h1": NewConnectionClients(url, APP_HOST, workers=workers, tls=tls),
        "h2": NewConnectionClients(url, APP_HOST, workers=workers, tls=tls, http2=True),
    }
    try:
        async with LoadClient(bed.ca, bed.https_port, APP_HOST, connections=workers) as kept_alive:
            await kept_alive.answered(20)
            for clients in fresh.values():
                await clients.answered(10)
            for n in range(1, changes + 1):
                result = await reconciler.submit(validated(route_set(n)))
                assert result.outcome == "applied", result.summary()
                # Traffic between two changes, as between two deploys, from every kind of client.
                await kept_alive.answered(2)
                for clients in fresh.values():
                    await clients.answered(1)
            await kept_alive.answered(20)
        echoing = sum(await asyncio.gather(*(echoes(s, f"after {changes} changes") for s in sockets)))
    finally:
        for clients in fresh.values():
            await clients.stop()
        await asyncio.gather(*(s.close() for s in sockets))
    figures = kept_alive.figures
    return {
        "changes": changes,
        "loads": reconciler.loads - loads_before,
        "websockets_opened": len(sockets),
        "websockets_echoing": echoing,
        "new_connection_ok": {name: c.ok for name, c in fresh.items()},
        "new_connection_failures": {name: dict(c.failures) for name, c in fresh.items()},
        "keep_alive_ok": figures.ok,
        "keep_alive_retried": figures.retried,
        "keep_alive_failures": dict(collections.Counter(f.what for f in figures.failures if not f.fresh)),
        "keep_alive_fresh_failures": dict(collections.Counter(f.what for f in figures.failures if f.fresh)),
    }


def run_in_own_netns(changes: int, websockets: int, workers: int, tcp_migrate_req: int, timeout: float) -> RouteChanges:
    """The scenario in a network namespace of its own (see `benchmarks.netns`), its figures read back."""
    command = [sys.executable, "-m", "tests.support.route_changes", "--changes", str(changes)]
    command += ["--websockets", str(websockets), "--workers", str(workers)]
    completed = subprocess.run(
        in_own_netns(command, tcp_migrate_req), capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"route changes scenario failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return RouteChanges(**json.loads(completed.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.route_changes", description=__doc__)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--websockets", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--netns", type=int, choices=(0, 1))
    args = parser.parse_args()
    if args.netns is not None:
        problem = netns_problem()
        if problem:
            raise SystemExit(problem)
        result = run_in_own_netns(args.changes, args.websockets, args.workers, args.netns, timeout=600)
    else:
        result = asyncio.run(route_changes(args.changes, args.websockets, args.workers))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
