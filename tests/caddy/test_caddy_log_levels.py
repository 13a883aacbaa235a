"""The spawned Caddy's own lines stay at DEBUG unless they are warnings an operator should see.

A real Caddy through start, a load and a restart (killed, then resumed from its autosave): coretraffic's log at
INFO shows its own summary, not Caddy's ~25 start-up lines, and a restart does not warn about `--config`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.errors import CaddyUnavailable
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import validated
from tests.support.waiting import wait_until


def caddy_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "source", None) == "caddy"]


async def test_caddy_lines_are_debug_through_start_load_and_restart(
    caplog: pytest.LogCaptureFixture,
    ca: DemoCA,
    upstream: DemoUpstream,
    caddy: CaddyProcess,
    admin: CaddyAdmin,
    reconciler: Reconciler,
) -> None:
    caplog.set_level(logging.DEBUG, logger="coretraffic.caddy")
    result = await reconciler.submit(validated([demo_route(ca, "app.example.test", upstream.port)]))
    assert result.ok, result
    supervisor = asyncio.create_task(caddy.supervise())
    try:
        assert caddy.pid is not None
        os.kill(caddy.pid, signal.SIGKILL)
        await wait_until(lambda: asyncio.sleep(0, caddy.restarts == 1), 10, "caddy restarted")
        seen = len(caddy_records(caplog))

        async def answering_with_new_lines() -> bool:
            try:
                await admin.ping()
            except CaddyUnavailable:
                return False
            return len(caddy_records(caplog)) > seen

        await wait_until(answering_with_new_lines, 20, "the restarted caddy answering")
        assert await admin.has_id(result_marker(reconciler))  # resumed from its autosave
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
    records = caddy_records(caplog)
    assert len(records) > 10  # Caddy did talk: its lines are there, at DEBUG
    loud = [r.getMessage()[:200] for r in records if r.levelno >= logging.INFO]
    assert loud == []
    assert not any("--resume" in r.getMessage() and "--config" in r.getMessage() for r in records)


def result_marker(reconciler: Reconciler) -> str:
    marker = reconciler.applied_marker
    assert marker is not None
    return marker
