"""The secrets canary: the secrets a test hands out (marked keys and passwords, the body lines of every PEM), and
the check that none of them comes back in anything a person reads."""

from __future__ import annotations

import re
from typing import Any

from coretraffic.testing.pki import DemoCA, demo_route

CANARY = "CANARY-rel-8d2e"
BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class Canary:
    """The secrets this suite hands out, and the check that none of them comes back in anything a person reads.

    Every private key carries the canary on a line before its PEM block (PEM parsers skip it, so the key stays
    valid), every password starts with it, and the body lines of every PEM handed out are remembered: a leak of
    any part of a key or certificate is found, not just the markers.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = {CANARY}
        self._certificates: set[str] = set()

    def route(self, ca: DemoCA, host: str, upstream_port: int, *, password: str | None = None) -> dict[str, Any]:
        config = demo_route(ca, host, upstream_port)
        config["privateKey"] = self.key(str(config["privateKey"]))
        self.certificate(str(config["publicKey"]))
        if password is not None:
            config["authentication"] = {"type": "Basic", "user": "alice", "pass": self.password(password)}
        return config

    def key(self, pem: str) -> str:
        self._secrets.update(_body_lines(pem))
        return f"{CANARY}-key\n{pem}"

    def certificate(self, pem: str) -> str:
        self._certificates.update(_body_lines(pem))
        return pem

    def password(self, text: str) -> str:
        return f"{CANARY}-{text}"

    def leaks(self, text: str, *, certificates: bool = True) -> list[str]:
        """What of the secrets is in `text`; `certificates=False` where showing certificates is the point."""
        needles = self._secrets | self._certificates if certificates else self._secrets
        found = [needle for needle in needles if needle in text]
        found += BCRYPT_HASH.findall(text)
        if "PRIVATE KEY-----" in text:
            found.append("a PEM private key marker")
        return found

    def check(self, text: str, where: str, *, certificates: bool = True) -> None:
        leaked = self.leaks(text, certificates=certificates)
        assert not leaked, f"secrets in {where}: {[secret[:24] + '...' for secret in leaked[:3]]}"


def _body_lines(pem: str) -> set[str]:
    return {line for line in pem.splitlines() if len(line) >= 16 and "-----" not in line}
