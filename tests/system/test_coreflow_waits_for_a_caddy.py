"""A driver that finds its Caddies by DNS starts with none: it tags itself with Coreflow (which then sends its
set at once) only when the fleet has a Caddy, or after a bound. Found on a fresh Swarm deploy (tests/engines),
where the first set was answered "no Caddy" only because the gates appear some seconds after the driver."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from coretraffic.reconcile.fleet import Fleet
from coretraffic.reconcile.target import CaddyTarget
from coretraffic.settings import AdminAddress
from coretraffic.sources.coreflow.source import CoreflowSource
from coretraffic.sources.intake import Intake
from tests.support.coreflow import Peer


class _Found:
    """A Caddy just found by discovery: the fleet only names it until it runs (never started here)."""

    def __init__(self, address: AdminAddress) -> None:
        self.name = address.name


def _found(address: AdminAddress) -> CaddyTarget:
    return cast(CaddyTarget, _Found(address))


async def test_no_tag_until_the_fleet_has_a_caddy(peer: Peer) -> None:
    fleet = Fleet()
    task = asyncio.create_task(CoreflowSource(peer.url, Intake(fleet), ready=fleet.first_member).run())
    try:
        # Untagged it stays: the peer waits 3 s for a tag that an unguarded driver sends within milliseconds.
        assert (await peer.status(until_tagged=True, wait_s=3))["tagged"] is False
        address = AdminAddress("https", "10.0.0.7:2021", "unix//shared/admin.sock", "tasks.caddy-admin")
        await fleet.replace_discovered([address], _found, source="tasks.caddy-admin")
        assert (await peer.status(until_tagged=True, wait_s=10))["tagged"] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_a_caddy_it_tags_after_the_bound_and_says_so(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet()
    source = CoreflowSource(peer.url, Intake(fleet), ready=fleet.first_member, ready_timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="coretraffic.coreflow"):
        task = asyncio.create_task(source.run())
        try:
            assert (await peer.status(until_tagged=True, wait_s=10))["tagged"] is True
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert any("no Caddy found within" in r.getMessage() for r in caplog.records)
