"""One render of a route set for every Caddy the driver loads.

Each target's reconciler renders the routes it is about to load (`Reconciler(render_config=...)`); handing them
all the same `RenderOnce` makes the first to ask render (hashing new passwords, building 10,000 routes) and the
others get that same JSON, to which each adds its own admin address (`render.with_admin_listen`) and foreign
parts. A target that isolated a rejected host asks for fewer routes and gets a render of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from coretraffic.caddyjson.layout import JSON
from coretraffic.core.validate import Route
from coretraffic.reconcile.reconciler import ConfigRenderer


class RenderOnce:
    """A `ConfigRenderer` that renders the same routes once, whoever asks and from whichever thread.

    The same routes means the same `Route` objects in the same order: every target takes them from the one
    validated set the sources hand over, so comparing identities is exact and costs microseconds, where comparing
    values would cost a pass over every certificate. The last render is kept (one set's JSON) and never changed by
    the reconcilers, which copy what they add to it.
    """

    def __init__(self, render: ConfigRenderer) -> None:
        self._render = render
        self._lock = threading.Lock()  # renders run in worker threads (`asyncio.to_thread`), several at once
        self._routes: tuple[Route, ...] = ()
        self._config: JSON | None = None
        self.renders = 0

    def __call__(self, routes: Sequence[Route]) -> JSON:
        with self._lock:
            if self._config is None or not _same_routes(routes, self._routes):
                self._config = self._render(routes)
                self._routes = tuple(routes)
                self.renders += 1
            return self._config


def _same_routes(routes: Sequence[Route], known: Sequence[Route]) -> bool:
    return len(routes) == len(known) and all(a is b for a, b in zip(routes, known, strict=True))
