"""The reliability bed: the hypothesis profiles, the canary and the DEBUG log capture behind the secrets checks,
and a fast upstream in a Caddy of its own (the benchmarks' `Bed`). The load client and the canary itself are
helpers: tests/support/load.py and tests/support/canary.py.

Everything talks to 127.0.0.1 only. Nothing sleeps to synchronise: tests wait on conditions with deadlines.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from benchmarks.harness import Bed, start_upstream
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.observe.logs import setup_logging
from coretraffic.reconcile.reconciler import Reconciler
from tests.support.caddy import renderer_for, running
from tests.support.canary import Canary

# -- hypothesis ----------------------------------------------------------------------------------------------

# CI must not flake: the same examples on every run, and no example database carried between runs. Locally the
# examples vary from run to run (that is how new failures are found) and failures are replayed from the database.
settings.register_profile("reliability-ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("reliability-dev", print_blob=True)
settings.load_profile("reliability-ci" if os.environ.get("CI") == "true" else "reliability-dev")

# -- the secrets canary --------------------------------------------------------------------------------------


@pytest.fixture
def canary() -> Canary:
    return Canary()


@pytest.fixture(autouse=True)
def debug_log(canary: Canary) -> Iterator[io.StringIO]:
    """Every test here runs with the driver's logging as `--log-level DEBUG --log-format json` sets it up (Caddy's
    lines included, on `coretraffic.caddy`), and ends with the canary searched in all of it."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "websockets")}
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    for handler in saved_handlers:  # pytest's own capture stays, so a failure still shows the log
        root.addHandler(handler)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in libraries.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)
    canary.check(stream.getvalue(), "the DEBUG log")


# -- a fast upstream: a second Caddy, never reloaded with the config under test ---------------------------------


@pytest.fixture
async def bed(caddy: CaddyProcess, admin: CaddyAdmin, short_tmp: Path) -> AsyncIterator[Bed]:
    """The spawned Caddy with a static upstream in a Caddy of its own: a Python upstream would share the test's
    CPU (and GIL) with the load client and the reconciler, and be what gives first; an upstream inside the Caddy
    under test would have its connections closed by every reload, which a real upstream does not."""
    upstream, ports = await start_upstream(short_tmp / "upstream")
    yield Bed(caddy, admin, ports)
    await upstream.stop()


@pytest.fixture
async def bed_reconciler(bed: Bed) -> AsyncIterator[Reconciler]:
    async with running(Reconciler(bed.admin, renderer_for(bed.settings))) as reconciler:
        yield reconciler
