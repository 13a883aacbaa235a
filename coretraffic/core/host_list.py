"""The host list (`/hosts`, `coretraffic hosts`): each host the newest route set named, what serves it, and why not.

Pure (the clock comes in as an argument). Built from what the driver already holds after the serving policy's
decision (`serving.Decision`: the routes applied, the set's problems, stale hosts, a held-back removal): nothing is
validated again, so the list of 100,000 hosts costs one pass over them. No secret is read: a route's auth shows as
on or off, its certificate as the leaf's fingerprint and dates.

A host's state:

- `served`: the set's config for it serves.
- `stale`: its newest config was refused; its last good version keeps serving (`serving.StaleHost`).
- `rejected`: its config was refused and it was never served, so nothing serves it.
- `removal_held_back`: the set leaves it out, but the mass-removal guard keeps it serving until the removal is
  confirmed (`serving.HeldRemoval`). Not `served`: it is meant to go, and an operator should see that it has not.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from coretraffic.core.serving import Decision, HeldRemoval
from coretraffic.core.validate import Problem, Route, Validation, host_or_label

HostState = Literal["served", "stale", "rejected", "removal_held_back"]
HOST_STATES: tuple[HostState, ...] = ("served", "stale", "rejected", "removal_held_back")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class ArrivedSet:
    """Which route set the list is of: its number since the driver started (from 1) and when it came."""

    number: int
    received: datetime


@dataclass(frozen=True)
class HostFilter:
    """Which entries to build: only these names (lower case; empty: all) and only this state ("": all)."""

    hosts: Collection[str] = ()
    state: str = ""

    def wants(self, host: str, state: HostState) -> bool:
        return (not self.hosts or host in self.hosts) and (not self.state or state == self.state)


def hosts_document(
    arrived: ArrivedSet | None,
    decision: Decision | None,
    held: HeldRemoval | None,
    now: datetime,
    only: HostFilter = HostFilter(),
) -> dict[str, Any]:
    """The `/hosts` document. `decision`: the policy's for the newest set (None: none applied yet, or the whole set
    is held back after a restart); `held`: the removal held back now, if any (the policy's)."""
    entries = sorted(_entries(decision, only, now), key=lambda entry: entry["host"]) if decision is not None else []
    return {
        "set": None
        if arrived is None
        else {
            "number": arrived.number,
            "received": _iso(arrived.received),
            "applied": decision is not None,
        },
        "held_back": held.reason() if held is not None else "",
        "hosts": entries,
    }


def rejected_count(decision: Decision) -> int:
    """How many entries of the list are `rejected` (for `/status`)."""
    return len(_problems_by_host(decision.validation, {host.host for host in decision.stale})[1])


def _entries(decision: Decision, only: HostFilter, now: datetime) -> Iterator[dict[str, Any]]:
    validation = decision.validation
    stale = {host.host: host for host in decision.stale}
    held = decision.held
    held_hosts = frozenset(held.hosts) if held is not None else frozenset()
    warnings, rejected = _problems_by_host(validation, stale)
    for route in validation.routes:
        host = route.host
        state: HostState = "stale" if host in stale else "removal_held_back" if host in held_hosts else "served"
        if not only.wants(host, state):
            continue
        entry = _route_entry(route, state, warnings.get(host, []), now)
        if state == "stale":
            entry["reason"] = _texts(stale[host].refused)
            entry["since"] = _iso(stale[host].since)
        elif state == "removal_held_back" and held is not None:
            entry["reason"] = [
                f"the set removes it; held back by the mass-removal guard, confirm with `coretraffic "
                f"confirm-removal {held.ident}`"
            ]
            entry["since"] = _iso(held.since)
        yield entry
    for host, problems in rejected.items():
        if only.wants(host, "rejected"):
            yield {
                "host": host,
                "state": "rejected",
                "reason": _texts(problems),
                "since": None,
                "upstreams": [],
                "auth": None,
                "certificate": None,
                "warnings": warnings.get(host, []),
            }


def _problems_by_host(
    validation: Validation, stale: Collection[str]
) -> tuple[dict[str, list[str]], dict[str, list[Problem]]]:
    """The set's warnings by host, and the errors of hosts nothing serves. An error of a host that is served by
    another config of the set is a warning of that host; a stale host's errors are its reason, not repeated."""
    warnings: dict[str, list[str]] = {}
    for problem in validation.warnings:
        warnings.setdefault(problem.host, []).append(f"{problem.field}: {problem.message}")
    errors = validation.errors
    if not errors:  # the usual set: no pass over 100,000 routes for nothing
        return warnings, {}
    served = {route.host for route in validation.routes}
    rejected: dict[str, list[Problem]] = {}
    for problem in errors:
        host = host_or_label(problem.host)
        if host in stale:
            continue
        if host in served:
            warnings.setdefault(host, []).append(
                f"{problem.field}: {problem.message} (a refused config for this host, which another config serves)"
            )
        else:
            rejected.setdefault(host, []).append(problem)
    return warnings, rejected


def _route_entry(route: Route, state: HostState, warnings: list[str], now: datetime) -> dict[str, Any]:
    certificate = route.certificate
    return {
        "host": route.host,
        "state": state,
        "reason": [],
        "since": None,
        "upstreams": list(route.upstreams),
        "auth": route.basic_auth is not None,
        "certificate": {
            "sha256": certificate.sha256,
            "not_after": _iso(certificate.not_after),
            "expired": now > certificate.not_after,
            "days_left": round((certificate.not_after - now).total_seconds() / _DAY_S, 1),
        },
        "warnings": warnings,
    }


def _texts(problems: Collection[Problem]) -> list[str]:
    return [f"{problem.field}: {problem.message}" for problem in problems]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
