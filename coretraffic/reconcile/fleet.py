"""The Caddies one driver keeps converged, fed the same route sets: what the sources hand their sets to.

Each target (`target.CaddyTarget`) converges on its own, with its own reconciler: coalescing, retries, self-heal
and foreign parts are per Caddy, so a frozen, slow, rejecting or unreachable Caddy never holds up the others.
What is the same for all is done once: sources validate a set once (`sources.intake`), and the targets share one
`render_once.RenderOnce`, so it is hashed and rendered once. Sets are numbered; each target knows which number it
last loaded, which is what fleet readiness is judged on.

Members come and go: fixed ones (`--caddy-admin`, the spawned Caddy) for the driver's life, discovered ones as
DNS says (`replace_discovered`). A new member gets the latest set at once; a vanished one is stopped and closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from coretraffic.core.validate import Validation
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.reconcile.target import CaddyTarget
from coretraffic.settings import AdminAddress

log = logging.getLogger("coretraffic.fleet")

Submitted = Mapping[str, "asyncio.Future[ApplyResult]"]  # target name -> the apply of the set there
TargetFactory = Callable[[AdminAddress], CaddyTarget]


class Fleet:
    def __init__(self, targets: Iterable[CaddyTarget] = ()) -> None:
        self._members: dict[str, CaddyTarget] = {}
        for target in targets:
            self._members[target.name] = target
        self._discovered: dict[str, set[str]] = {}  # discovery source (a DNS name) -> the members it found
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._latest: Validation | None = None
        self._has_member = asyncio.Event()  # set for good once any Caddy is a member
        if self._members:
            self._has_member.set()
        self.sets = 0  # sets handed over so far; the latest one is number `sets`

    @property
    def targets(self) -> list[CaddyTarget]:
        return list(self._members.values())

    # -- sources' side -------------------------------------------------------------------------------------

    def submit_nowait(self, validation: Validation) -> Submitted:
        """Give the set to every Caddy; each future resolves with that Caddy's apply of it (or of a newer set)."""
        self._latest = validation
        self.sets += 1
        return {name: target.submit(validation, self.sets) for name, target in self._members.items()}

    async def first_member(self) -> None:
        """Returns once the fleet has had a member: what a source may wait for before inviting route sets, so that
        a fresh deploy, whose gates are found some seconds after the driver starts, is not told it has no Caddy."""
        await self._has_member.wait()

    def unavailable_because(self, name: str) -> str:
        target = self._members.get(name)
        return target.unavailable_because if target is not None else "it left the fleet"

    # -- life ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the Caddies the driver spawns (attached ones are expected to run already)."""
        for target in self._members.values():
            await target.start()

    async def run(self) -> None:
        """Run every member until cancelled; members added meanwhile run too."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for name, target in self._members.items():
                self._tasks[name] = group.create_task(target.run())
            try:
                await asyncio.Future()  # a fleet with no member yet (discovery finds none) keeps running
            finally:
                self._group = None

    async def close(self) -> None:
        for target in self._members.values():
            await target.close()

    # -- discovery -----------------------------------------------------------------------------------------

    async def replace_discovered(
        self, addresses: Iterable[AdminAddress], make_target: TargetFactory, *, source: str
    ) -> None:
        """Make the members `source` found those at `addresses`: new ones join with the latest set, gone ones leave.

        A Caddy already a member (named by `--caddy-admin`, or found by another source) is not added twice.
        """
        wanted = {address.name: address for address in addresses}
        found = self._discovered.setdefault(source, set())
        for name in sorted(found - wanted.keys()):
            found.discard(name)
            await self._leave(name)
        for name, address in sorted(wanted.items()):
            if name not in self._members:
                found.add(name)
                self._join(make_target(address))

    def _join(self, target: CaddyTarget) -> None:
        log.info("caddy %s joined the fleet", target.name)
        self._members[target.name] = target
        self._has_member.set()
        if self._group is not None:
            self._tasks[target.name] = self._group.create_task(target.run())
        if self._latest is not None:
            target.submit(self._latest, self.sets)

    async def _leave(self, name: str) -> None:
        log.info("caddy %s left the fleet", name)
        target = self._members.pop(name)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await target.close()
