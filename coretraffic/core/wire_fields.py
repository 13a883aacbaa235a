"""Fields a config carries that are not part of the wire format: ignored, reported, or fatal to the host.

Pure. Coreflow may add fields in a newer version, so a field coretraffic does not know is no reason to refuse a
host: it is a notice (`check --strict` counts it). A name close to a known one is most likely a typo of it, and
the known field then is missing: a warning that says "did you mean". A typo of the field that protects a host
fails closed: `"authentification": {...}` would otherwise serve the host without its basic auth, so any unknown
top-level name that looks like access control rejects the host (which keeps serving its last good version, if it
had one: `core.served`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from coretraffic.core.text import printable

CONFIG_FIELDS = frozenset(
    {"hostName", "destinationIps", "destinationPorts", "privateKey", "publicKey", "authentication"}
)
AUTHENTICATION_FIELDS = frozenset({"type", "user", "pass"})
PROTECTING_FIELD = "authentication"
# Lower-case parts of a top-level name that say it is about who may reach the host.
_ACCESS_CONTROL_WORDS = ("auth", "pass", "user", "cred", "login", "htpasswd")
_CLOSE = 0.75  # difflib ratio from which a name is taken for a typo of a known one

Kind = Literal["error", "warning", "notice"]


def unknown_field_findings(raw: Any) -> Iterator[tuple[str, str, Kind]]:
    """(field path, message, kind) for each field of `raw` that the wire format does not have.

    Cheap when there is none (two set comparisons): it runs for every config of every set.
    """
    if type(raw) is not dict:
        return
    if not raw.keys() <= CONFIG_FIELDS:
        for name in sorted(raw.keys() - CONFIG_FIELDS, key=str):
            yield _finding(printable(str(name), 40), str(name), CONFIG_FIELDS, top_level=True)
    auth = raw.get("authentication")
    if type(auth) is dict and not auth.keys() <= AUTHENTICATION_FIELDS:
        for name in sorted(auth.keys() - AUTHENTICATION_FIELDS, key=str):
            yield _finding(
                f"authentication.{printable(str(name), 40)}", str(name), AUTHENTICATION_FIELDS, top_level=False
            )


def _finding(path: str, name: str, known: frozenset[str], *, top_level: bool) -> tuple[str, str, Kind]:
    guess = _closest(name, known)
    if top_level and (guess == PROTECTING_FIELD or any(word in name.lower() for word in _ACCESS_CONTROL_WORDS)):
        return (
            path,
            f"is not a wire field (did you mean '{PROTECTING_FIELD}'?); it looks like access control, so the host "
            "is refused rather than served without it",
            "error",
        )
    if guess is not None:
        return path, f"is not a wire field (did you mean '{guess}'?); ignored", "warning"
    return path, "is not a wire field; ignored", "notice"


def _closest(name: str, known: frozenset[str]) -> str | None:
    by_case: Mapping[str, str] = {k.lower(): k for k in known}
    if name.lower() in by_case:
        return by_case[name.lower()]
    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=_CLOSE)
    return found[0] if found else None
