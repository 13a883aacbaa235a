"""A throwaway certificate authority and the certificates it issues, for tests, benchmarks and the demo.

Real certificates for real TLS handshakes. Nothing here is used when coretraffic runs in production.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


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
