"""`coretraffic hosts`: the `/hosts` document (`core.host_list`) as a table for a person, one host a line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from coretraffic.core.host_list import HOST_STATES
from coretraffic.core.text import counted

COLUMNS = ("HOST", "STATE", "AUTH", "UPSTREAMS", "CERT SHA-256", "EXPIRES", "REASON")
REASON_WIDTH = 72  # the rest of a reason is in `--json`
UPSTREAMS_SHOWN = 2
FINGERPRINT_SHOWN = 16  # hex digits: enough to tell certificates apart by eye, as `coretraffic status` shows them


def hosts_text(document: dict[str, Any]) -> str:
    return "\n".join(_lines(document))


def _lines(document: dict[str, Any]) -> Iterator[str]:
    arrived = document["set"]
    if arrived is None:
        # Not "nothing is served": a restarted driver's Caddy serves what it ran before until the first set applies.
        yield "no route set has come since the driver started"
        return
    if document["held_back"]:
        yield f"HELD BACK: {document['held_back']}"
    entries = document["hosts"]
    if not arrived["applied"]:
        yield f"route set {arrived['number']} (received {arrived['received']}) is not applied"
        return
    rows = [COLUMNS, *(_row(entry) for entry in entries)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    for row in rows:
        yield "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
    states = Counter(entry["state"] for entry in entries)
    counts = ", ".join(f"{states[state]} {state.replace('_', ' ')}" for state in HOST_STATES if states[state])
    yield (
        f"{counted(len(entries), 'host')}{': ' + counts if counts else ''} "
        f"(route set {arrived['number']}, received {arrived['received']})"
    )


def _row(entry: dict[str, Any]) -> tuple[str, ...]:
    certificate = entry["certificate"]
    auth = entry["auth"]
    return (
        entry["host"],
        entry["state"],
        "-" if auth is None else "on" if auth else "off",
        _upstreams(entry["upstreams"]),
        certificate["sha256"][:FINGERPRINT_SHOWN] if certificate else "-",
        _expires(certificate) if certificate else "-",
        _shortened("; ".join(entry["reason"] or [f"warning: {w}" for w in entry["warnings"]])),
    )


def _upstreams(upstreams: list[str]) -> str:
    shown = ",".join(upstreams[:UPSTREAMS_SHOWN]) or "-"
    more = len(upstreams) - UPSTREAMS_SHOWN
    return f"{shown} +{more}" if more > 0 else shown


def _expires(certificate: dict[str, Any]) -> str:
    date, days = certificate["not_after"][:10], certificate["days_left"]
    return f"{date} (EXPIRED {-days:g} d ago)" if certificate["expired"] else f"{date} ({days:g} d)"


def _shortened(text: str) -> str:
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 3] + "..."
