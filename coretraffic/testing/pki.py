"""Throwaway certificate authorities and the certificates they issue, for tests, benchmarks and the demo.

Real certificates for real TLS handshakes, in the two shapes coretraffic meets:
- `DemoCA`: a self-signed root that signs leaves directly (how clusters with their own CA look);
- `PublicLikeCA`: a root, an intermediate that signs the leaves, and the Authority Information Access extension
  (an OCSP responder URL and a CA-issuers URL) on every leaf, with EC P-256 or RSA 2048 keys: how certificates
  from public CAs look. `publicKey` then holds the leaf followed by the intermediate.

Nothing here is used when coretraffic runs in production.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec", "rsa"]
# What a leaf may be used for (its Extended Key Usage): a TLS server, a TLS client, or (None) anything.
Usage = Literal["server", "client"] | None
_USAGE_OIDS = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


def new_key(key_type: KeyType = "ec") -> CertificateIssuerPrivateKeyTypes:
    """A fresh key: EC P-256 (about 0.1 ms) or RSA 2048 (tens of milliseconds: reuse one where many are needed)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: CertificateIssuerPrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem(certificates: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_certificate(
    subject: str, key: CertificateIssuerPrivateKeyTypes, issuer: x509.Name, signer: CertificateIssuerPrivateKeyTypes
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer == _name(subject) else 0), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str  # the leaf, then any intermediates, as `publicKey` carries them
    private_key_pem: str


class DemoCA:
    """A self-signed CA that issues leaf certificates directly (EC P-256 by default: about 0.1 ms each)."""

    def __init__(self, name: str = "coretraffic demo CA") -> None:
        self._key = new_key()
        self._certificate = _ca_certificate(name, self._key, _name(name), self._key)

    @classmethod
    def from_pem(cls, certificate_pem: str, private_key_pem: str) -> DemoCA:
        """A CA saved earlier (`certificate_pem`, `private_key_pem`), to issue more leaves that clients trust."""
        ca = cls.__new__(cls)
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("a demo CA key is EC or RSA")
        ca._key = key
        ca._certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        return ca

    @property
    def certificate_pem(self) -> str:
        """The root, for clients to trust."""
        return _pem([self._certificate])

    @property
    def private_key_pem(self) -> str:
        return _pem_key(self._key)

    def _chain(self) -> tuple[x509.Certificate, ...]:
        """What is sent after the leaf."""
        return ()

    def _leaf_extensions(self, builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
        return builder

    def _signer(self) -> tuple[x509.Name, CertificateIssuerPrivateKeyTypes]:
        return self._certificate.subject, self._key

    def issue(
        self,
        names: Iterable[str],
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key: CertificateIssuerPrivateKeyTypes | None = None,
        key_type: KeyType = "ec",
        usage: Usage = None,
    ) -> IssuedCertificate:
        """A leaf for `names`; with `key`, for that key (say one RSA key reused, as generating one is slow).

        `usage` limits it to TLS servers or TLS clients (Extended Key Usage): Go refuses a server-only certificate
        presented as a client's, so the admin gate's own certificate cannot drive another gate.
        """
        names = list(names)
        key = key or new_key(key_type)
        issuer, signer = self._signer()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([_USAGE_OIDS[usage]]), critical=False)
        leaf = self._leaf_extensions(builder).sign(signer, hashes.SHA256())
        return IssuedCertificate(_pem([leaf, *self._chain()]), _pem_key(key))


class PublicLikeCA(DemoCA):
    """A root and an intermediate; leaves are signed by the intermediate and carry AIA, as a public CA's do.

    `ocsp_url` and `ca_issuers_url` go into every leaf's Authority Information Access extension: point them at a
    local listener to see whether anything fetches them.
    """

    def __init__(
        self,
        name: str = "coretraffic public-like CA",
        *,
        ocsp_url: str = "http://127.0.0.1:9/ocsp",
        ca_issuers_url: str = "http://127.0.0.1:9/intermediate.der",
        key_type: KeyType = "ec",
    ) -> None:
        super().__init__(f"{name} root")
        self._intermediate_key = new_key(key_type)
        self._intermediate = _ca_certificate(
            f"{name} intermediate", self._intermediate_key, self._certificate.subject, self._key
        )
        self._access = x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)),
                x509.AccessDescription(
                    AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers_url)
                ),
            ]
        )

    @property
    def intermediate_pem(self) -> str:
        return _pem([self._intermediate])

    def _chain(self) -> tuple[x509.Certificate, ...]:
        return (self._intermediate,)

    def _leaf_extensions(self, builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
        return builder.add_extension(self._access, critical=False)

    def _signer(self) -> tuple[x509.Name, CertificateIssuerPrivateKeyTypes]:
        return self._intermediate.subject, self._intermediate_key


def demo_route(
    ca: DemoCA,
    host: str,
    upstream_port: int,
    *,
    key_type: KeyType = "ec",
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> dict[str, Any]:
    """A config in Coreflow's wire format for `host`, proxied to 127.0.0.1:`upstream_port` (`key`: as `issue`)."""
    return route_config(host, ca.issue([host], key_type=key_type, key=key), upstream_port)


def route_config(host: str, issued: IssuedCertificate, upstream_port: int) -> dict[str, Any]:
    """A config in Coreflow's wire format for `host` with the certificate `issued`, proxied to 127.0.0.1."""
    return {
        "hostName": host,
        "destinationIps": ["127.0.0.1"],
        "destinationPorts": [upstream_port],
        "privateKey": issued.private_key_pem,
        "publicKey": issued.certificate_pem,
    }
