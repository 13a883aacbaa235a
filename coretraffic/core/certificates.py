"""Certificate chains and their private keys: parsed, proved to belong together, and remembered by content.

Pure. Parsing and matching a pair is most of validation's cost (about 0.2 ms a host), so each pair's result is
kept for the route set being validated and the one after it (`SetCache`), and can be given from outside
(`remember`): what `sources.checked_pairs_file` read from the last run's record on disk.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from coretraffic.core.set_cache import SetCache
from coretraffic.core.text import printable
from coretraffic.errors import FieldError

# What Go's crypto/tls accepts; cryptography also parses DSA and Ed448 keys, which Caddy would reject.
_TLS_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class Certificate:
    """What the rest of the driver needs to know about a checked certificate (never the key)."""

    sha256: str
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    # The chain re-encoded from what was parsed: anything else the PEM text carried never reaches Caddy.
    chain_pem: str = field(repr=False)
    # The issuer (RFC 4514) that the chain's last certificate names when that certificate is not self-signed and
    # its issuer is not in the chain either: what a client must already hold for the chain to reach a root. None
    # when the chain ends with a self-signed certificate. Whether a system trusts that issuer is `trust`'s
    # question, asked at each validation: the trust store is not part of the pair.
    needs_issuer: str | None = None


def check_pem_pair(certificate_pem: str, key_pem: str) -> Certificate:
    """Parse both PEMs and prove they belong together. Cached: the same pair comes in every route set."""
    return _checked_pairs.get((certificate_pem, key_pem), _check_pem_pair)


def _check_pem_pair(pair: tuple[str, str]) -> Certificate:
    certificate_pem, key_pem = pair
    if any(kind != "CERTIFICATE" for kind in _PEM_BLOCK.findall(certificate_pem)):
        # A private key pasted here would otherwise travel on as if it were public.
        raise FieldError("publicKey", "must hold only CERTIFICATE blocks (it holds another kind, e.g. a key)")
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.encode())
    except ValueError:
        raise FieldError("publicKey", "is not a PEM certificate (chain)") from None
    leaf = chain[0]
    try:
        # The RSA consistency check costs ~40 ms a key (7 minutes for 10,000 hosts). Skipping it is safe here: the
        # public half must still equal the certificate's, and Caddy checks the key itself at load, where a bad
        # one becomes that host's rejection ("PEM pair N").
        key = serialization.load_pem_private_key(key_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise FieldError("privateKey", "is encrypted; a key without a passphrase is needed") from None
    except (ValueError, UnsupportedAlgorithm):
        raise FieldError("privateKey", "is not a PEM private key") from None
    if not isinstance(key, _TLS_KEY_TYPES):
        raise FieldError("privateKey", "is not a key type Caddy can serve (RSA, ECDSA or Ed25519)")
    if key.public_key() != leaf.public_key():
        position = next((i for i, c in enumerate(chain) if c.public_key() == key.public_key()), None)
        if position is not None:
            raise FieldError(
                "publicKey",
                f"the certificate of privateKey is #{position + 1} of {len(chain)} in the chain; "
                "the leaf must come first",
            )
        raise FieldError("privateKey", "does not match the certificate in publicKey")
    _check_chain_order(chain)
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]
    return Certificate(
        sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        names=_certificate_names(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        chain_pem="".join(pems),
        needs_issuer=_issuer_outside(chain, pems[-1]),
    )


_checked_pairs: SetCache[tuple[str, str], Certificate] = SetCache()


def known_pair(certificate_pem: str, key_pem: str) -> bool:
    """Whether this pair's result is kept from the route set being validated or the one before it."""
    return _checked_pairs.holds((certificate_pem, key_pem))


def remember(certificate_pem: str, key_pem: str, certificate: Certificate) -> None:
    """Take `certificate` as the result of checking this pair, in the route set being validated."""
    _checked_pairs.keep((certificate_pem, key_pem), certificate)


def next_set() -> None:
    """A new route set begins (`SetCache.next_set`)."""
    _checked_pairs.next_set()


def _check_chain_order(chain: Sequence[x509.Certificate]) -> None:
    """After the leaf, each certificate must be the issuer of the one before it (a root at the end may follow).

    Names and key identifiers, not signatures: this finds a misordered chain or a stray certificate; trust is for
    the clients to decide, and a signature check would cost 0.1 ms a host (a second for 10,000 cold hosts).
    """
    for position, (child, parent) in enumerate(itertools.pairwise(chain), 1):
        if child.issuer != parent.subject or not _key_ids_agree(child, parent):
            raise FieldError(
                "publicKey",
                f"certificate #{position + 1} of {len(chain)} in the chain ({_subject(parent)}) is not the issuer of "
                f"#{position} ({_subject(child)}); after the leaf, each certificate must issue the one before it",
            )


def _issuer_outside(chain: Sequence[x509.Certificate], last_pem: str) -> str | None:
    """The issuer the chain's last certificate names, unless that certificate is self-signed.

    By names and key identifiers, as `_check_chain_order`, which also makes sure that the issuer is not in the
    chain (each certificate is issued by the next; an issuer earlier in the chain would be a loop). A root
    re-issued under the same name with another key looks the same here: this check is for the common mistake, a
    leaf sent without its intermediate. Parsing the names costs about as much as a tenth of the pair's check, and
    the last certificate of a CA's chains is the same intermediate for all its hosts: its answer is remembered by
    its text (`_ca_issuers`). A leaf alone is unique to its host and is not remembered.
    """
    if len(chain) == 1:
        return _issuer_needed(chain[0])
    if last_pem not in _ca_issuers:
        if len(_ca_issuers) >= _CA_ISSUERS_MAX:
            _ca_issuers.clear()
        _ca_issuers[last_pem] = _issuer_needed(chain[-1])
    return _ca_issuers[last_pem]


def _issuer_needed(last: x509.Certificate) -> str | None:
    if last.issuer == last.subject and _key_ids_agree(last, last):
        return None
    return last.issuer.rfc4514_string()


# Intermediates and roots seen at the end of a chain, by PEM text: a few per CA, whatever the number of hosts.
_CA_ISSUERS_MAX = 4096
_ca_issuers: dict[str, str | None] = {}


def _key_ids_agree(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """False only when both certificates name the issuing key and the names differ."""
    try:
        authority = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        subject = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return True
    return authority is None or authority == subject


def _subject(certificate: x509.Certificate) -> str:
    return printable(certificate.subject.rfc4514_string())


def _certificate_names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        # Without a SAN, TLS stacks fall back to the subject's common name.
        return tuple(str(attr.value) for attr in leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME))
    return tuple(san.get_values_for_type(x509.DNSName))
