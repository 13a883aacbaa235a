"""A minimal reproduction: a bare Caddy (no coretraffic config) reloaded under clients that open a new connection
per request. Every failure is counted by its kind.

    python -m benchmarks.bare_reloads [--tls] [--http2] [--reloads N] [--app-option grace_period=5s] [--netns 0|1]
                                      [--listen-fd]

`--netns V` re-runs the same command in a network namespace of its own with `net.ipv4.tcp_migrate_req=V`
(root). Each reload alternates between two configs that differ only in a route `@id`, so each is a real reload.
`--listen-fd` binds the listening socket here and hands it to Caddy (`fd/N`): every config then accepts from
that one kernel socket instead of binding its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.continuity import BARE_HOST, NewConnectionClients, bare_config
from benchmarks.harness import free_port
from benchmarks.netns import in_own_netns, netns_problem
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.render import serialise
from coretraffic.testing.pki import DemoCA


async def failures_across_reloads(
    reloads: int, *, workers: int, use_tls: bool, http2: bool, app: dict[str, Any], listen_fd: bool = False
) -> tuple[int, dict[str, int]]:
    """(requests answered, failures by kind) of `workers` new-connection clients across `reloads` reloads."""
    ca = DemoCA() if use_tls else None
    issued = None if ca is None else ca.issue([BARE_HOST])
    pair = None if issued is None else {"certificate": issued.certificate_pem, "key": issued.private_key_pem}
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096) if listen_fd else None
    with tempfile.TemporaryDirectory(prefix="ct-bare-") as tmp, listener or contextlib.nullcontext():
        caddy = CaddyProcess(Path(tmp) / "state", pass_fds=(listener.fileno(),) if listener else ())
        await caddy.start()
        admin = CaddyAdmin(caddy.admin_address)
        port = listener.getsockname()[1] if listener else free_port()
        listen = f"fd/{listener.fileno()}" if listener else None
        bodies = [
            serialise(bare_config(caddy.admin_address.listen, port, g, pair=pair, app=app, listen=listen))
            for g in range(2)
        ]
        try:
            await admin.load(bodies[0])
            scheme = "https" if use_tls else "http"
            tls = None if ca is None else ssl.create_default_context(cadata=ca.certificate_pem)
            clients = NewConnectionClients(
                f"{scheme}://127.0.0.1:{port}/", BARE_HOST, workers=workers, tls=tls, http2=http2
            )
            try:
                await clients.answered(20)
                for generation in range(1, reloads + 1):
                    await admin.load(bodies[generation % 2])
                    await clients.answered(2)  # some traffic between reloads, as between two deploys
            finally:
                await clients.stop()
        finally:
            await admin.aclose()
            await caddy.stop()
    return clients.ok, dict(clients.failures)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_reloads", description=__doc__)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--http2", action="store_true")
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--app-option", action="append", default=[], help="http app option NAME=JSON-or-string")
    parser.add_argument("--netns", type=int, choices=(0, 1), help="run in a new network namespace, sysctl set")
    parser.add_argument("--listen-fd", action="store_true", help="hand Caddy one listening socket as fd/N")
    args = parser.parse_args()
    if args.netns is not None:
        problem = netns_problem()
        if problem:
            raise SystemExit(problem)
        rest = [a for i, a in enumerate(sys.argv[1:]) if a != "--netns" and sys.argv[i] != "--netns"]
        command = in_own_netns([sys.executable, "-m", "benchmarks.bare_reloads", *rest], args.netns)
        raise SystemExit(subprocess.run(command, check=False).returncode)
    app = {}
    for option in args.app_option:
        name, _, value = option.partition("=")
        try:
            app[name] = json.loads(value)
        except json.JSONDecodeError:
            app[name] = value
    ok, failures = asyncio.run(
        failures_across_reloads(
            args.reloads, workers=args.workers, use_tls=args.tls, http2=args.http2, app=app, listen_fd=args.listen_fd
        )
    )
    print(json.dumps({"reloads": args.reloads, "ok": ok, "failed": sum(failures.values()), "failures": failures}))


if __name__ == "__main__":
    main()
