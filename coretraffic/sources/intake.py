"""Where route sets enter the loop, from any source: validated once, off the event loop, problems logged, handed
to the fleet of Caddies (`reconcile.fleet.Fleet`). The routes file and Coreflow both come through here, so they
behave the same.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from coretraffic.core.certificates import Certificate
from coretraffic.core.host_list import ArrivedSet, HostFilter, hosts_document, rejected_count
from coretraffic.core.readings import Reading
from coretraffic.core.serving import Decision, ServingPolicy
from coretraffic.core.text import counted
from coretraffic.core.trust import TrustedRoots
from coretraffic.core.validate import Validation, checked_pairs
from coretraffic.errors import RemovalNotHeld
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.sources.checked_pairs_file import CheckedPairsFile
from coretraffic.sources.parallel import validate_on_cores
from coretraffic.sources.served_hosts_file import ServedHostsFile

log = logging.getLogger("coretraffic")

_Pairs = Sequence[tuple[tuple[str, str], Certificate]]
# How long the record of checked certificates waits for the first Caddy to take a set before it is written anyway.
SAVE_AFTER_S = 120.0
DEFAULT_REMOVAL_CONFIRM_AFTER_S = 300.0  # `Settings.removal_confirm_after`


class RouteSetSink(Protocol):
    """Where sources hand validated sets: the fleet (`reconcile.fleet.Fleet`)."""

    def submit_nowait(self, validation: Validation) -> Mapping[str, asyncio.Future[ApplyResult]]:
        """Queue the set at every Caddy; by Caddy name, the apply that covers it there."""
        ...

    def unavailable_because(self, name: str) -> str:
        """Why the Caddy `name` has not answered yet (its last error), or ""."""
        ...


class Intake:
    """The sources' way in: `submit` a route set document; with a `record`, checked certificates are kept on
    disk for the next process (`CheckedPairsFile`); with `roots` (the system's), a chain that reaches none is
    warned about (`core.trust`)."""

    def __init__(
        self,
        fleet: RouteSetSink,
        record: CheckedPairsFile | None = None,
        roots: TrustedRoots | None = None,
        policy: ServingPolicy | None = None,
        served_record: ServedHostsFile | None = None,
    ) -> None:
        self._fleet = fleet
        self._record = record
        self._roots = roots
        self._served_record = served_record
        self._served_saver: asyncio.Task[None] | None = None
        self.policy = policy or ServingPolicy(datetime.timedelta(seconds=DEFAULT_REMOVAL_CONFIRM_AFTER_S))
        self._validated: Validation | None = None  # the newest set as validated, before the policy's decision
        self._arrived: ArrivedSet | None = None  # which set that is, for `/hosts`
        self._decision: Decision | None = None  # the policy's decision for it (None: none applied yet)
        # The newest set's pairs, not written yet, and its applies; the task that writes them.
        self._latest: tuple[_Pairs, Mapping[str, asyncio.Future[ApplyResult]]] | None = None
        self._saver: asyncio.Task[None] | None = None

    async def submit(self, document: Any) -> Mapping[str, asyncio.Future[ApplyResult]]:
        """Validate a route set and queue it at every Caddy; each future resolves with the apply that covered it.

        Raises `RouteSetError` (and queues nothing) when the document as a whole is unusable, `RouteSetHeldBack`
        when the removal guard holds all of it back (`core.serving`).
        """
        now = datetime.datetime.now(datetime.UTC)
        # PEM parsing is CPU work: off the event loop (in a thread, or in forked workers for a mostly new set), so
        # heartbeats and health checks stay answered.
        validation = await validate_on_cores(document, now, record=self._record, roots=self._roots)
        _log_problems(validation)
        self._validated = validation
        self._arrived = ArrivedSet(self._arrived.number + 1 if self._arrived is not None else 1, now)
        return self._hand_over(validation, now)

    def confirm_removal(self, ident: str) -> str:
        """Apply the newest set's removal that the guard holds back as `ident` (an operator's confirmation); what
        happened, for the operator. Raises `RemovalNotHeld` when no such removal is held back."""
        held = self.policy.held
        if held is None or held.ident != ident or self._validated is None:
            now_held = f"the removal held back now is {held.ident}" if held is not None else "none is held back now"
            raise RemovalNotHeld(f"no removal {ident!r} is held back ({now_held})")
        log.warning("removal %s of %s confirmed by an operator", ident, counted(len(held.hosts), "host"))
        self._hand_over(self._validated, datetime.datetime.now(datetime.UTC), confirmed=ident)
        return f"removal {ident} confirmed: {counted(len(held.hosts), 'host')} are no longer served once applied"

    def _hand_over(
        self, validation: Validation, now: datetime.datetime, confirmed: str = ""
    ) -> Mapping[str, asyncio.Future[ApplyResult]]:
        """The policy's decision for the set (stale hosts kept, a mass removal held back) to every Caddy."""
        decision = self.policy.decide(validation, now, confirmed=confirmed)
        self._decision = decision
        for stale in decision.stale:
            log.warning(
                "route %s: new config refused, its last good version keeps serving (stale since %s)",
                stale.host,
                stale.since.isoformat(timespec="seconds"),
            )
        if decision.held is not None:
            log.error("route set: %s", decision.held.reason())
        submitted = self._fleet.submit_nowait(decision.validation)
        if self._served_record is not None and (self._served_saver is None or self._served_saver.done()):
            # Written in the background (100,000 names take a few ms); a burst writes the newest names once.
            self._served_saver = asyncio.create_task(self._save_served(self._served_record))
        if self._record is not None:
            self._latest = (checked_pairs(), submitted)
            if self._saver is None or self._saver.done():
                self._saver = asyncio.create_task(self._save_latest(self._record))
        return submitted

    async def _save_served(self, record: ServedHostsFile) -> None:
        served = None
        # `served` is the same frozenset until a set changes it: `is` tells a newer set apart without comparing
        # 100,000 names.
        while served is not (newest := self.policy.served):
            served = newest
            await asyncio.to_thread(record.save, served)

    async def _save_latest(self, record: CheckedPairsFile) -> None:
        """Write the record for the newest set once it is rendered and loaded somewhere: writing is Python work in
        this process, and beside the render (one for every Caddy) it would delay the load. A Caddy that does not
        answer holds it back for a while only. Only the newest set's pairs wait (a burst keeps one copy)."""
        while self._latest is not None:
            pairs, submitted = self._latest
            if submitted:
                await asyncio.wait(submitted.values(), timeout=SAVE_AFTER_S, return_when=asyncio.FIRST_COMPLETED)
            if self._latest[0] is not pairs:
                continue  # a newer set came meanwhile: that one is written
            self._latest = None
            await asyncio.to_thread(record.save, pairs)

    def unavailable_because(self, name: str) -> str:
        """Why the Caddy `name` has not answered yet (its last error), or ""."""
        return self._fleet.unavailable_because(name)

    # -- what the status server reads (observe.view.ServingView) -------------------------------------------

    def description(self) -> dict[str, Any]:
        """Stale hosts (since when, which version serves, why the new one was refused), how many hosts were
        rejected, and a held-back removal."""
        now = datetime.datetime.now(datetime.UTC)
        held = self.policy.held
        return {
            "stale": [stale.document(now) for stale in self.policy.stale],
            "rejected": rejected_count(self._decision) if self._decision is not None else 0,
            "removal_held_back": held.document() if held is not None else None,
        }

    def hosts(self, only: HostFilter) -> Callable[[], dict[str, Any]]:
        """What builds the host list of the newest set (`core.host_list`) as it is now: what it reads is taken
        here and never changes, so the list may be built in another thread."""
        now = datetime.datetime.now(datetime.UTC)
        return functools.partial(hosts_document, self._arrived, self._decision, self.policy.held, now, only)

    def readings(self) -> tuple[Reading, ...]:
        held = self.policy.held
        return (
            Reading(
                "coretraffic_hosts_stale",
                "Hosts served by their last good version because their newest config was refused",
                "gauge",
                len(self.policy.stale),
            ),
            Reading(
                "coretraffic_removal_held_hosts",
                "Hosts the newest route set removes that keep serving: the mass-removal guard holds the removal back",
                "gauge",
                len(held.hosts) if held is not None else 0,
            ),
        )


def _log_problems(validation: Validation) -> None:
    """Errors and warnings one line each; notices (fields the wire format does not have, which a newer Coreflow
    may send with every host) as one line that counts them by field."""
    for problem in validation.problems:
        if problem.severity != "notice":
            level = logging.WARNING if problem.severity == "warning" else logging.ERROR
            log.log(level, "route %s: %s", problem.severity, problem)
    fields = Counter(problem.field for problem in validation.notices)
    if fields:
        listed = ", ".join(f"{name} ({counted(count, 'host')})" for name, count in sorted(fields.items()))
        log.info("fields that are not part of the wire format, ignored: %s", listed)
