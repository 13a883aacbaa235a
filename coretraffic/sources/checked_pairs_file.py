"""The certificate pairs a driver has checked, kept on disk so that the next process need not check them again.

`run` checks each pair once and keeps the result in memory (`core.certificates`), but a one-shot command (`diff`,
`check`) and a restarted driver start cold: at 100,000 hosts, parsing every chain and key and proving that they
belong together is about 20 s of CPU, most of what `diff` costs. So `run` writes what it found for the pairs of
its route set to a file in the state directory, and a process about to validate a set first gives validation the
results of the pairs it finds there (`certificates.remember`).

What the file holds: for each pair, a digest of its two PEM texts, then the certificate's fingerprint, names and
validity, the chain when it was re-encoded to other text, and the issuer the chain needs from outside (none when
it ends with a root; whether the system trusts that issuer is judged at each validation). Never a key. It is
written with mode 0600 and replaced whole (a reader sees the old file or the new one).

When a result is used: only from a file written with the same certificate checks (a digest of the module that
makes them) and the same `cryptography`, and only for the exact bytes that were checked. Nothing in it depends
on the clock: expiry is judged at each validation. A file that is missing, damaged or from other checks is
ignored, and the pairs are checked as before.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import cryptography
import orjson

from coretraffic.core import certificates
from coretraffic.core.certificates import Certificate
from coretraffic.errors import StateFileError
from coretraffic.sources.private_file import read_private_json, write_private

FILE_NAME = "checked-certificates.json"
_FORMAT = 2  # 2: each entry ends with the issuer the chain needs (`Certificate.needs_issuer`)

log = logging.getLogger("coretraffic")


def _checks_digest() -> str:
    """What a result depends on besides its pair: the code that checks pairs, and the library it parses with."""
    source = Path(certificates.__file__).read_bytes()
    return f"{hashlib.sha256(source).hexdigest()[:16]} cryptography {cryptography.__version__}"


class CheckedPairsFile:
    """The file at `path`: read at most once per process (`recall`), written when a set brings new pairs (`save`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._checks = _checks_digest()
        self._read = False
        self._written: set[tuple[str, str]] = set()  # the pairs the file holds, as far as this process knows
        self._writing = threading.Lock()  # `save` runs in threads; one write at a time
        self._warned = False

    def recall(self, configs: Sequence[Any]) -> None:
        """Give validation the results this file holds for the pairs of `configs` it does not know.

        The file is read on the first call only: after it, the results of every pair it could hold are in memory
        or were never wanted, and a later set's new pairs are new to the file too.
        """
        if self._read:
            return
        self._read = True
        wanted = [pair for pair in map(_pair, configs) if pair is not None and not certificates.known_pair(*pair)]
        entries = self._entries() if wanted else {}
        for pair in wanted:
            entry = entries.get(_digest(*pair))
            certificate = _certificate(entry, pair[0]) if entry is not None else None
            if certificate is not None:
                certificates.remember(*pair, certificate)
                self._written.add(pair)

    def save(self, pairs: Sequence[tuple[tuple[str, str], Certificate]]) -> None:
        """Write the results of `pairs` (a set's `validate.checked_pairs()`) if any is not in the file yet.

        Blocking I/O: call it in a thread. A failure is logged once and costs nothing else.
        """
        with self._writing:
            if all(pair in self._written for pair, _ in pairs):
                return
            document = {
                "format": _FORMAT,
                "checks": self._checks,
                "pairs": {_digest(*pair): _entry(certificate, pair[0]) for pair, certificate in pairs},
            }
            try:
                write_private(self.path, orjson.dumps(document))
            except OSError as exc:
                self._warn(f"cannot write {self.path}: {exc.strerror or exc}")
                return
            self._written = {pair for pair, _ in pairs}

    def _entries(self) -> dict[str, Any]:
        try:
            document = read_private_json(self.path)
        except StateFileError as exc:
            self._warn(str(exc))
            return {}
        if document is None:
            return {}
        written_format = document.get("format") if isinstance(document, dict) else None
        if not (isinstance(written_format, int) and 1 <= written_format <= _FORMAT):
            self._warn(f"{self.path} is not a file of checked certificates this version writes")
            return {}
        # An earlier version's file (an earlier format, other checks): quietly checked again.
        if written_format != _FORMAT or document.get("checks") != self._checks:
            return {}
        pairs = document.get("pairs")
        return pairs if isinstance(pairs, dict) else {}

    def _warn(self, problem: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("checked certificates: %s; certificates are checked again by each new process", problem)


def _pair(raw: Any) -> tuple[str, str] | None:
    if type(raw) is not dict:
        return None
    certificate_pem, key_pem = raw.get("publicKey"), raw.get("privateKey")
    return (certificate_pem, key_pem) if type(certificate_pem) is str and type(key_pem) is str else None


def _digest(certificate_pem: str, key_pem: str) -> str:
    text = certificate_pem.encode()
    # The length first: no other split of the same bytes into two texts has the same digest.
    return hashlib.sha256(len(text).to_bytes(8, "big") + text + key_pem.encode()).hexdigest()


def _entry(certificate: Certificate, certificate_pem: str) -> list[Any]:
    chain = None if certificate.chain_pem == certificate_pem else certificate.chain_pem
    return [
        certificate.sha256,
        list(certificate.names),
        certificate.not_before.isoformat(),
        certificate.not_after.isoformat(),
        chain,
        certificate.needs_issuer,
    ]


def _certificate(entry: Any, certificate_pem: str) -> Certificate | None:
    """The entry as a `Certificate`, or None when it is damaged (the pair is then checked again)."""
    try:
        sha256, names, not_before, not_after, chain, needs_issuer = entry
    except (TypeError, ValueError):
        return None
    if needs_issuer is not None and not isinstance(needs_issuer, str):
        return None
    if not (isinstance(sha256, str) and isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return None
    if chain is not None and not isinstance(chain, str):
        return None
    try:
        valid = datetime.fromisoformat(not_before), datetime.fromisoformat(not_after)
    except (TypeError, ValueError):
        return None
    if any(moment.tzinfo is None for moment in valid):  # validation compares them with an aware clock
        return None
    return Certificate(sha256, tuple(names), *valid, certificate_pem if chain is None else chain, needs_issuer)
