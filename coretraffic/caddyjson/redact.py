"""Secret redaction for anything a person will read: `render`, `diff`, logs of configs.

Pure. Private keys and password hashes become `<redacted sha256:...>` (a fingerprint, so two outputs still show
whether a secret changed, without revealing it); certificates optionally become their fingerprint too.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from coretraffic.caddyjson.layout import ACCOUNT_PASSWORD, ACCOUNT_USER, PEM_CERTIFICATE, PEM_KEY


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def certificate_fingerprint(pem: str) -> str:
    """SHA-256 of the (first) certificate's DER, as `openssl x509 -fingerprint -sha256` and `diff` show it."""
    try:
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    except ValueError:
        return fingerprint(pem)  # not a certificate Caddy could load either: fingerprint the text
    return hashlib.sha256(der).hexdigest()[:16]


def redact(document: Any, *, certificates: bool = False) -> Any:
    """A copy of a Caddy config with every secret replaced by a fingerprint (works at any nesting depth)."""
    if isinstance(document, list):
        return [redact(item, certificates=certificates) for item in document]
    if not isinstance(document, dict):
        return document
    copy = {key: redact(value, certificates=certificates) for key, value in document.items()}
    if isinstance(copy.get(PEM_KEY), str) and PEM_CERTIFICATE in copy:  # a tls load_pem entry
        copy[PEM_KEY] = f"<redacted private key sha256:{fingerprint(copy[PEM_KEY])}>"
        if certificates and isinstance(copy[PEM_CERTIFICATE], str):
            copy[PEM_CERTIFICATE] = f"<certificate sha256:{certificate_fingerprint(copy[PEM_CERTIFICATE])}>"
    if isinstance(copy.get(ACCOUNT_PASSWORD), str) and ACCOUNT_USER in copy:  # an http_basic account
        copy[ACCOUNT_PASSWORD] = f"<redacted password hash sha256:{fingerprint(copy[ACCOUNT_PASSWORD])}>"
    return copy


# Field names that hold secrets in Caddy modules beyond the two shapes coretraffic writes (DNS provider tokens,
# OAuth client secrets, transport keys, ...): a one-line value of such a field is never shown.
_SECRET_NAME = re.compile(r"key|secret|password|passwd|token|credential", re.IGNORECASE)
_SHOWN_CHARACTERS = 80
# What `redact` leaves where a secret was: shown as it is. Any other value of a secret-named field is hidden.
_REDACTED = re.compile(r"<(redacted [a-z ]+|certificate) sha256:[0-9a-f]{16}>")


def value_text(value: Any, name: str | int = "") -> str:
    """A config value as one short line for a person: what `redact` hides stays hidden, so do values of fields
    whose name says secret, anywhere inside; certificates become fingerprints; a long value is cut."""
    shown = _masked(redact(value, certificates=True), name)
    text = json.dumps(shown, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 3] + "..."


def _masked(value: Any, name: str | int) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, name) for item in value]
    already_hidden = isinstance(value, str) and _REDACTED.fullmatch(value) is not None
    if isinstance(name, str) and _SECRET_NAME.search(name) and not already_hidden:
        return f"<redacted sha256:{fingerprint(str(value))}>"
    if isinstance(value, str) and "-----BEGIN" in value:
        return f"<PEM sha256:{fingerprint(value)}>"
    return value
