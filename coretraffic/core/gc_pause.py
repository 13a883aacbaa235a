"""The cycle collector paused while a large, acyclic structure is built (a rendered config, the host list).

Building tens of thousands of small objects sets off full collections that walk the whole heap holding the GIL,
which costs more than the building itself (BENCHMARKS.md, "What moved the numbers"); nothing built there makes
cycles worth collecting. Pauses may overlap (the reconciler renders on the event loop while `/hosts` is built in a
thread): the collector runs again when the last of them ends, and only if it ran before the first began.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


class _Pauses:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._was_enabled:
                    gc.enable()


_pauses = _Pauses()


def collector_paused() -> contextlib.AbstractContextManager[None]:
    """A block during which the cycle collector does not run (see the module's docstring)."""
    return _pauses.held()
