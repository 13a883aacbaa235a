"""What the status server reads of the running loop: small protocols, so that `observe` needs no part of `app`.

The status server (`status`) only reads. It sees the driver as its Caddy targets (each one Caddy: its admin API,
what was loaded into it, how the loads went), its route sources (each describes itself for `/status` and
reports neutral metric readings, `core.readings`, that become Prometheus metrics here) and the DNS names it
discovers Caddies by. `app.service.Driver`,
`reconcile.target.CaddyTarget` and the sources in `sources` answer these protocols; nothing here knows them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from coretraffic.core.host_list import HostFilter
from coretraffic.core.readings import Reading
from coretraffic.reconcile.reconciler import ApplyResult


class TargetView(Protocol):
    """One Caddy the driver loads."""

    @property
    def name(self) -> str:
        """Its admin API's address as status and replies name it (`unix//path`, `http://host:port`)."""
        ...

    @property
    def running_set(self) -> int:
        """The number of the newest route set it was loaded with (sets are counted from 1; 0: none yet)."""
        ...

    @property
    def behind_since(self) -> float | None:
        """Monotonic time since when it has not run the latest set given to it; None: nothing says it does not."""
        ...

    @property
    def last_result(self) -> ApplyResult | None: ...

    @property
    def unavailable_because(self) -> str:
        """Why its admin API has not answered the set being applied (the last error), or ""."""
        ...

    @property
    def loads(self) -> int: ...

    @property
    def retries(self) -> int: ...

    @property
    def heals(self) -> int: ...

    @property
    def applied_marker(self) -> str | None:
        """The `@id` of the config last applied to it (None: none yet)."""
        ...

    @property
    def foreign_parts(self) -> tuple[str, ...]:
        """Servers and apps in it that are someone else's, carried over."""
        ...

    @property
    def restarts(self) -> int | None:
        """How often the Caddy coretraffic spawned was started again; None for a Caddy it did not spawn."""
        ...

    async def ping(self) -> None:
        """Return once its admin API answers; raise CaddyUnavailable or CaddyRejected otherwise."""
        ...

    async def has_id(self, object_id: str) -> bool: ...

    async def upstreams(self) -> list[dict[str, Any]]:
        """Caddy's upstream addresses with their current fail counts (`address`, `num_requests`, `fails`) and the
        hosts of the applied set that use each (`hosts`)."""
        ...


class SourceView(Protocol):
    """One place route sets come from."""

    def description(self) -> dict[str, Any]:
        """The source's part of `/status`: what it is and how it is doing, never a secret."""
        ...

    def readings(self) -> Sequence[Reading]: ...


class ServingView(Protocol):
    """What the sources' sets may change of what is served (`core.serving`): stale hosts, a held-back removal."""

    def description(self) -> dict[str, Any]: ...

    def hosts(self, only: HostFilter) -> Callable[[], dict[str, Any]]:
        """What builds the `/hosts` document (`core.host_list`: the hosts of the newest set that `only` selects) of
        the state now; it may be called in another thread."""
        ...

    def readings(self) -> Sequence[Reading]: ...

    def confirm_removal(self, ident: str) -> str:
        """Apply the held-back removal `ident`; raises `RemovalNotHeld` when it is not held back."""
        ...


class DiscoveryView(Protocol):
    """One DNS name whose records are Caddies."""

    def description(self) -> dict[str, Any]: ...


class DriverView(Protocol):
    @property
    def targets(self) -> Sequence[TargetView]: ...

    @property
    def sources(self) -> Sequence[SourceView]: ...

    @property
    def discoveries(self) -> Sequence[DiscoveryView]: ...

    @property
    def serving(self) -> ServingView: ...
