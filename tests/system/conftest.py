"""Fixtures of the Coreflow client tests: a stub routing handler in place of the reconciler, a watch to wait on
the client's state with, a client runner, and a free port. The peer fixtures are in tests/conftest.py."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from coretraffic.sources.coreflow import CoreflowClient
from tests.support import ports
from tests.support.coreflow import StubHandler, Watch, running_client


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def stub(watch: Watch) -> StubHandler:
    return StubHandler(watch)


@pytest.fixture
def run_client(
    watch: Watch, stub: StubHandler
) -> Callable[[str], contextlib.AbstractAsyncContextManager[CoreflowClient]]:
    """`async with run_client(url) as client:` runs a CoreflowClient with the stub handler."""
    return lambda url: running_client(url, stub, watch)


@pytest.fixture(name="free_port")
def a_free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    return ports.free_port()
