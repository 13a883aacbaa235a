"""A leaf sent without its intermediate: `check` warns, and a real client shows why.

The most common TLS outage: the chain in `publicKey` stops at the leaf, so a client that holds only the root (any
client but a browser that cached the intermediate) fails the handshake with "unable to get local issuer
certificate". coretraffic cannot fetch the intermediate for the host, but it can say so before it happens: a
warning per host ("intermediate missing?"), which `check --strict` fails on. Here the test CA's root stands in for
a public root: it is the "system's" trusted root (`SSL_CERT_FILE` for the `check` process, the `roots` given to
the intake in this one), as ISRG Root X1 is on a real machine. Real `coretraffic check`, a real Caddy, a real
OpenSSL client; EC and RSA chains.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coretraffic.core.trust import TrustedRoots
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.sources.intake import Intake
from coretraffic.testing.pki import KeyType, PublicLikeCA, route_config
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import OneCaddy
from tests.support.dataplane import https_get
from tests.support.ports import Ports

BARE, FULL = "bare.example.test", "full.example.test"


def routes(public_ca: PublicLikeCA, upstream_port: int, key_type: KeyType) -> list[dict[str, Any]]:
    """`FULL` with its chain as the CA sent it (leaf, intermediate); `BARE` with the leaf alone."""
    full = route_config(FULL, public_ca.issue([FULL], key_type=key_type), upstream_port)
    bare = route_config(BARE, public_ca.issue([BARE], key_type=key_type), upstream_port)
    bare["publicKey"] = bare["publicKey"].replace(public_ca.intermediate_pem, "")
    assert bare["publicKey"].count("BEGIN CERTIFICATE") == 1
    return [full, bare]


def check(tmp_path: Path, configs: list[dict[str, Any]], trusted_pem: str, *flags: str) -> tuple[int, list[str]]:
    """`coretraffic check` in a process of its own, whose system trust store is `trusted_pem`."""
    (tmp_path / "routes.json").write_text(json.dumps(configs))
    (tmp_path / "roots.pem").write_text(trusted_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORETRAFFIC_", "SSL_CERT_"))}
    env |= {"SSL_CERT_FILE": str(tmp_path / "roots.pem"), "CORETRAFFIC_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "coretraffic", "check", "--routes", str(tmp_path / "routes.json"), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.splitlines()


def handshake_error(port: int, host: str, root_pem: str) -> str:
    """What a client that trusts only `root_pem` says about `host`'s chain ("" when the handshake succeeds)."""
    context = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host):
                return ""
        except ssl.SSLCertVerificationError as exc:
            return str(exc.verify_message)


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
async def test_a_leaf_without_its_intermediate_is_warned_about_and_fails_a_client_that_holds_only_the_root(
    tmp_path: Path, reconciler: Reconciler, upstream: DemoUpstream, ports: Ports, key_type: KeyType
) -> None:
    public_ca = PublicLikeCA(f"chain test CA {key_type}", key_type=key_type)
    configs = routes(public_ca, upstream.port, key_type)
    root = public_ca.certificate_pem

    code, lines = check(tmp_path, configs, root)
    assert code == 0, lines  # served: a warning, not an error
    (warning,) = [line for line in lines if line.startswith("warning: ")]
    assert warning.startswith(f"warning: {BARE}: publicKey: chain does not reach a root: ")
    assert "intermediate missing?" in warning
    assert lines[-1] == "2 hosts valid, 0 errors, 1 warning, 0 notices"
    assert check(tmp_path, configs, root, "--strict")[0] == 1
    assert check(tmp_path, configs[:1], root, "--strict") == (0, ["1 host valid, 0 errors, 0 warnings, 0 notices"])

    # `run`'s path: the intake judges chains against the roots it was given, and the set goes to a real Caddy.
    intake = Intake(OneCaddy(reconciler), roots=TrustedRoots.from_pem([root.encode()]))
    result = await (await intake.submit(configs))["caddy"]
    assert sorted(result.applied_hosts) == [BARE, FULL]
    assert [(p.host, p.field) for p in result.warnings] == [(BARE, "publicKey")]
    assert result.ok  # the reply to Coreflow: nothing rejected

    # Why the warning matters: the same root that makes FULL work is not enough for BARE.
    assert handshake_error(ports.https, FULL, root) == ""
    assert (await https_get(root, ports.https, FULL)).status_code == 200
    assert handshake_error(ports.https, BARE, root) == "unable to get local issuer certificate"
    # ... and the leaf itself is fine: a client that also holds the intermediate (a browser that cached it) works.
    assert handshake_error(ports.https, BARE, root + public_ca.intermediate_pem) == ""
