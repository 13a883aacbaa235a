"""Whether a host's chain reaches a root: the trusted roots, indexed by subject, and the warning when it does not.

Pure: the roots come in as PEM text (`sources.trust_store` reads the system's). A leaf sent without its
intermediate is the most common TLS outage: browsers that cached the intermediate work, every other client fails
with "unable to get local issuer certificate". Validation cannot see that from the certificates alone, so a
chain whose last certificate names an issuer that is neither in the chain (`Certificate.needs_issuer`) nor a
root this system trusts is a warning (served; `check --strict` fails on it).

Only the issuer's name is looked up (a set lookup per host, nothing parsed): the pair's own facts come from the
certificate cache, whatever the size of the set.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from coretraffic.core.certificates import Certificate
from coretraffic.core.text import printable

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class TrustedRoots:
    """The subjects (RFC 4514) of the roots a client is expected to hold."""

    subjects: frozenset[str] = frozenset()

    @classmethod
    def from_pem(cls, bundles: Iterable[bytes]) -> TrustedRoots:
        """The roots of PEM bundles (as `/etc/ssl/certs/ca-certificates.crt`). A certificate that does not parse is
        skipped, not fatal: one odd entry in a system store must not cost the others."""
        subjects = set()
        with warnings.catch_warnings():
            # Old roots with a negative serial number parse with a deprecation warning: the subject is all we read.
            warnings.simplefilter("ignore")
            for bundle in bundles:
                for block in _PEM_CERTIFICATE.findall(bundle):
                    try:
                        subjects.add(x509.load_pem_x509_certificate(block).subject.rfc4514_string())
                    except ValueError:
                        continue
        return cls(frozenset(subjects))


def chain_warning(certificate: Certificate, roots: TrustedRoots) -> str | None:
    """Why this chain does not reach a root, or None when it does (or ends with a self-signed certificate)."""
    issuer = certificate.needs_issuer
    if issuer is None or issuer in roots.subjects:
        return None
    return _warning(issuer)


@functools.lru_cache(maxsize=256)  # one text per missing issuer: a CA's hosts all miss the same one
def _warning(issuer: str) -> str:
    return (
        f"chain does not reach a root: its last certificate is issued by {printable(issuer, 120)}, which is neither "
        "in the chain nor among the system's trusted roots: intermediate missing? (clients without it fail with "
        "'unable to get local issuer certificate'; a private CA's own root may end publicKey)"
    )
