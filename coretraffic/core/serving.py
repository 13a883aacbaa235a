"""What a route set may change of what is served: each host's last good version, and a guard on mass removal.

Pure (the clock comes in as an argument). Sits between validation and the fleet (`sources.intake`), so the routes
file and Coreflow get the same care. Two rules, both fail-static as Envoy, Istio and Contour keep the last accepted
config when a new one is refused:

- **Stale hosts.** A host that is served and whose new config is refused (a key that does not match, another
  host's certificate, a typo in `authentication`, ...) keeps serving its last good version, marked stale, until a
  good config for it arrives or a set leaves it out. A host that was never served is refused as before. The kept
  version serves even after its certificate expires: clients then see an expired certificate, which is what they
  would see had the bad config never come, and the host's auth and upstreams stay its own.
- **Mass removal.** A set that would stop serving more than half of the served hosts, and at least
  `REMOVAL_GUARD_MIN_HOSTS` of them, or all of them with no host in their place, is a failed read upstream far
  more often than an intent: its removals are held back (those hosts keep serving; the rest of the set applies)
  until the same removal comes again at least `confirm_after` after it was first held, or an operator confirms it.
  Below that size, removing most hosts, or replacing them all, is the ordinary work of a small cluster; a set that
  leaves nothing served is not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from coretraffic.core.text import counted
from coretraffic.core.validate import Problem, Route, Validation
from coretraffic.errors import RouteSetHeldBack

REMOVAL_GUARD_MIN_HOSTS = 10


@dataclass(frozen=True)
class StaleHost:
    """A served host whose newest config was refused: its last good version keeps serving."""

    host: str
    since: datetime
    refused: tuple[Problem, ...]  # why the newest config was refused
    serving: Route = field(repr=False)

    def document(self, now: datetime) -> dict[str, Any]:
        """For `/status`: no secret, only what identifies the version that serves."""
        certificate = self.serving.certificate
        return {
            "host": self.host,
            "since": self.since.isoformat(timespec="seconds"),
            "refused_because": [f"{p.field}: {p.message}" for p in self.refused],
            "serving": {
                "certificate_sha256": certificate.sha256,
                "certificate_not_after": certificate.not_after.isoformat(timespec="seconds"),
                "certificate_expired": now > certificate.not_after,
                "upstreams": list(self.serving.upstreams),
                "basic_auth": self.serving.basic_auth is not None,
            },
        }


@dataclass(frozen=True)
class HeldRemoval:
    """Hosts a set would stop serving that keep serving until the removal is confirmed."""

    hosts: tuple[str, ...]
    served: int  # hosts served when the set came
    since: datetime
    confirm_after: timedelta
    # The first set after a driver restart: the hosts' routes are not known here, so none of the set is applied.
    whole_set: bool = False

    @property
    def ident(self) -> str:
        """What an operator names to confirm exactly this removal (`coretraffic confirm-removal`)."""
        return removal_ident(self.hosts)

    def reason(self) -> str:
        text = (
            f"removal of {counted(len(self.hosts), 'host')} of {self.served} held back since "
            f"{self.since.isoformat(timespec='seconds')}: {removal_guard_rule()}; they keep serving until a set "
            f"removes them again {_seconds(self.confirm_after)} or more after that, or an operator confirms removal "
            f"{self.ident}"
        )
        if self.whole_set:
            text += (
                "; the driver restarted and holds none of these hosts' configs, so nothing of this set is applied: "
                "the Caddies keep what they run"
            )
        return text

    def document(self) -> dict[str, Any]:
        return {
            "id": self.ident,
            "hosts": len(self.hosts),
            "served": self.served,
            "since": self.since.isoformat(timespec="seconds"),
            "confirmed_by_a_set_after": (self.since + self.confirm_after).isoformat(timespec="seconds"),
            "why": removal_guard_rule(),
            "whole_set": self.whole_set,
            "first_hosts": list(self.hosts[:20]),
        }


@dataclass(frozen=True)
class Decision:
    """What the fleet applies for a set (`validation`: the set's routes and the kept ones, the set's problems,
    its stale hosts and held-back removal named) and why."""

    validation: Validation
    stale: tuple[StaleHost, ...]
    held: HeldRemoval | None


def removal_ident(hosts: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(sorted(hosts)).encode()).hexdigest()[:12]


def removal_guard_rule() -> str:
    return (
        f"a set may not stop serving more than half of the served hosts when that is {REMOVAL_GUARD_MIN_HOSTS} or "
        "more, nor all of them with no host in their place, at once"
    )


def removal_is_guarded(removed: int, served: int, remaining: int) -> bool:
    """Whether a set that stops serving `removed` of `served` hosts and serves `remaining` hosts is held back."""
    return removed * 2 > served and (removed >= REMOVAL_GUARD_MIN_HOSTS or (removed == served and remaining == 0))


class ServingPolicy:
    """Remembers what is served and decides what each new set may change of it (see the module's docstring)."""

    def __init__(self, confirm_after: timedelta, served_before: frozenset[str] = frozenset()) -> None:
        """`served_before`: the names a previous driver process served (`sources.served_hosts_file`), for the
        guard to judge its first set by; their routes are not known."""
        self.confirm_after = confirm_after
        self._served_before = served_before
        self._served: dict[str, Route] = {}
        self._served_names: frozenset[str] = frozenset()  # the keys of `_served`, kept for `served`
        self._stale: dict[str, StaleHost] = {}
        self.held: HeldRemoval | None = None

    @property
    def stale(self) -> tuple[StaleHost, ...]:
        return tuple(self._stale[host] for host in sorted(self._stale))

    @property
    def served(self) -> frozenset[str]:
        """The names served now (as far as the sets say), or those a previous process served until a set applies."""
        return self._served_names if self._served or not self._served_before else self._served_before

    def decide(self, validation: Validation, now: datetime, *, confirmed: str = "") -> Decision:
        """The routes to apply for `validation`; `confirmed` names a held removal an operator confirmed.

        Raises `RouteSetHeldBack` when nothing of the set may be applied: the first set after a restart that would
        remove most of what the previous process served (whose routes are not known here to keep).
        """
        wanted = {route.host for route in validation.routes}
        if self._served_before and not self._served:
            removed = tuple(sorted(self._served_before - wanted))
            held = self._hold(removed, len(self._served_before), len(wanted), now, confirmed)
            if held is not None:
                self.held = replace(held, whole_set=True)
                raise RouteSetHeldBack(self.held.reason())
            self._served_before = frozenset()
        kept: dict[str, Route] = {}
        stale: dict[str, StaleHost] = {}
        for host, problems in validation.refused.items():
            previous = self._served.get(host)
            if previous is None:
                continue  # never served: refused as it is
            kept[host] = previous
            before = self._stale.get(host)
            since = before.since if before is not None and before.serving is previous else now
            stale[host] = StaleHost(host, since, problems, previous)
        removed = tuple(sorted(h for h in self._served if h not in wanted and h not in kept))
        held = self._hold(removed, len(self._served), len(wanted) + len(kept), now, confirmed)
        if held is not None:
            kept.update((host, self._served[host]) for host in held.hosts)
        routes = (*validation.routes, *kept.values())
        applied = replace(
            validation,
            routes=routes,
            stale=tuple(sorted(stale)),
            held_back=held.reason() if held is not None else "",
        )
        self._served = {route.host: route for route in routes}
        self._served_names = frozenset(self._served)
        self._stale = stale
        self.held = held
        return Decision(applied, self.stale, held)

    def _hold(
        self, removed: tuple[str, ...], served: int, remaining: int, now: datetime, confirmed: str
    ) -> HeldRemoval | None:
        if not self.confirm_after or not removal_is_guarded(len(removed), served, remaining):
            return None
        before = self.held
        # The same intent: a set that still removes every host held back (and maybe more).
        same = before is not None and set(before.hosts) <= set(removed)
        since = before.since if before is not None and same else now
        if same and now - since >= self.confirm_after:
            return None  # removed again after the delay: meant
        if confirmed and confirmed == removal_ident(removed):
            return None
        return HeldRemoval(removed, served, since, self.confirm_after)


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():g} s"
