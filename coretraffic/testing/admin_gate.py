"""The admin gate of deploy/admin-gate.json run on loopback, with throwaway mutual-TLS material, for tests and
benchmarks.

The gate is a Caddy process of its own that admits only clients with a certificate from the operator's CA and
proxies them to a data-plane Caddy's local admin socket (docs/caddy.md, "Remote admin"). Here the deployed file
is run as written, its paths moved: the certificate directory to a temp dir, the socket to the Caddy under test,
`:2021` to a free loopback port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coretraffic.testing.pki import DemoCA, IssuedCertificate

# As deploy/admin-gate.json and the deployments name them (a Kubernetes TLS Secret's keys).
GATE_TLS_DIR = "/admin-tls"
GATE_SOCKET = "unix//shared/admin.sock"
GATE_LISTEN = ":2021"


@dataclass(frozen=True)
class MutualTLSFiles:
    """PEM files of one operator CA: the gate's server certificate and the driver's client certificate."""

    directory: Path  # the gate's: ca.crt, tls.crt, tls.key
    driver_cert: Path
    driver_key: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"


def write_mutual_tls(directory: Path, ca: DemoCA, server_name: str = "localhost") -> MutualTLSFiles:
    """The operator's material in `directory`: a gate certificate for `server_name` (TLS server only) and a
    driver certificate (TLS client only), both from `ca`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_text(ca.certificate_pem)
    _write_pair(directory / "tls.crt", directory / "tls.key", ca.issue([server_name], usage="server"))
    driver_cert, driver_key = directory / "driver.crt", directory / "driver.key"
    _write_pair(driver_cert, driver_key, ca.issue(["coretraffic-driver"], usage="client"))
    return MutualTLSFiles(directory, driver_cert, driver_key)


def _write_pair(cert: Path, key: Path, issued: IssuedCertificate) -> None:
    cert.write_text(issued.certificate_pem)
    key.touch(mode=0o600)
    key.write_text(issued.private_key_pem)


def gate_config(template: Any, *, port: int, admin_socket: str, files: MutualTLSFiles) -> Any:
    """`template` (deploy/admin-gate.json) with its paths and port moved here."""
    text = json.dumps(template)
    text = text.replace(f'"{GATE_TLS_DIR}/', f'"{files.directory}/').replace(f'"{GATE_SOCKET}"', f'"{admin_socket}"')
    return json.loads(text.replace(f'"{GATE_LISTEN}"', f'"127.0.0.1:{port}"'))


@contextlib.contextmanager
def running_gate(caddy_binary: Path, config: Any, port: int, config_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`caddy run` with the gate's `config` until the block ends; waits (20 s at most) for its port to accept."""
    config_path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [str(caddy_binary), "run", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process, deadline_s=20)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"the admin gate exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.02)  # polling a condition with a deadline, not synchronising by sleep
    raise RuntimeError(f"the admin gate did not listen on 127.0.0.1:{port} within {deadline_s} s")
