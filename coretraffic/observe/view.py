"""What the status server reads of the running loop: small protocols, so that `observe` needs no part of `app`.

The status server (`status`) only reads. It sees the driver as its Caddy targets (each one Caddy: its admin API,
what was loaded into it, how the loads went) and its route sources (each describes itself for `/status` and
reports neutral metric readings, `core.readings`, that become Prometheus metrics here). `app.service.Driver`,
`reconcile.target.CaddyTarget` and the sources in `sources` answer these protocols; nothing here knows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from coretraffic.core.readings import Reading


class TargetView(Protocol):
    """One Caddy the driver loads."""

    @property
    def admin_listen(self) -> str:
        """Its admin API's address, in Caddy's notation."""
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


class DriverView(Protocol):
    @property
    def targets(self) -> Sequence[TargetView]: ...

    @property
    def sources(self) -> Sequence[SourceView]: ...
