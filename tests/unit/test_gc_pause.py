"""Overlapping pauses of the cycle collector: the reconciler's render on the loop, `/hosts` in a thread."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from coretraffic.core.gc_pause import collector_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_the_collector_runs_again_only_when_the_last_overlapping_pause_ends() -> None:
    gc.enable()
    inside, leave = threading.Event(), threading.Event()

    def other_pause() -> None:
        with collector_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_pause)
    with collector_paused():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled(), "the thread's pause still holds"
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()  # as the one-shot commands run
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
