"""Demo material: a throwaway CA, certificates issued by it, and a tiny upstream that says who answered.

Used by `coretraffic demo` (the README's first command, which needs no Coreflow) and by the tests, which need
real certificates for real TLS handshakes. Nothing here is used when coretraffic runs in production.
"""

from __future__ import annotations

import datetime
import http.server
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from coretraffic.service import Driver, run_driver
from coretraffic.settings import Settings

DEMO_HOSTS = ("app.example.test", "admin.example.test")


def _pem_key(key: CertificateIssuerPrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    private_key_pem: str


class DemoCA:
    """A self-signed CA that issues EC P-256 leaf certificates (cheap: about 0.1 ms each)."""

    def __init__(self, name: str = "coretraffic demo CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def certificate_pem(self) -> str:
        return self._certificate.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self,
        names: Iterable[str],
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key: CertificateIssuerPrivateKeyTypes | None = None,
    ) -> IssuedCertificate:
        """A leaf for `names`; with `key`, for that key (say one RSA key reused, as generating one is slow)."""
        names = list(names)
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key))


def demo_route(ca: DemoCA, host: str, upstream_port: int) -> dict[str, Any]:
    """A config in Coreflow's wire format for `host`, proxied to 127.0.0.1:`upstream_port`."""
    issued = ca.issue([host])
    return {
        "hostName": host,
        "destinationIps": ["127.0.0.1"],
        "destinationPorts": [upstream_port],
        "privateKey": issued.private_key_pem,
        "publicKey": issued.certificate_pem,
    }


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {"upstream": self.connection.getsockname()[1], "host": self.headers.get("Host"), "path": self.path}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo's output is coretraffic's own log."""


class DemoUpstream:
    """An HTTP server on 127.0.0.1 that answers every GET with JSON naming its port, the Host and the path."""

    def __init__(self, port: int = 0) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _EchoHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-upstream", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> DemoUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
        result = await driver.reconciler.wait_for_result()
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
