"""Setting up and looking into a Caddy under test: route sets validated as the driver validates them, the
cheap-bcrypt renderer and a running reconciler the fixtures are built from (and fed as a fleet of one), and the
`@id` objects of a config."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route, Validation, validate_route_set
from coretraffic.reconcile.reconciler import ApplyResult, Reconciler


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def validated(configs: list[dict[str, Any]]) -> Validation:
    """`configs` (wire format) validated now, as the driver validates what it is sent."""
    return validate_route_set(configs, now())


def renderer_for(settings: RenderSettings) -> Callable[[Sequence[Route]], JSON]:
    """The reconciler's renderer with `settings`, no base config and the cheapest bcrypt cost: tests check
    behaviour, not hash strength."""
    hasher = BcryptHasher(cost=4)

    def render_routes(routes: Sequence[Route]) -> JSON:
        return render(routes, settings, BaseConfig(), hasher)

    return render_routes


@contextlib.asynccontextmanager
async def running(reconciler: Reconciler) -> AsyncIterator[Reconciler]:
    """`reconciler.run()` as a task for the duration of the block, cancelled after it."""
    task = asyncio.create_task(reconciler.run())
    try:
        yield reconciler
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class OneCaddy:
    """One reconciler as the sources see a fleet (`sources.intake.RouteSetSink`), its Caddy named `caddy`: for
    tests that drive a reconciler of their own rather than a whole `Fleet`."""

    name = "caddy"

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler

    def submit_nowait(self, validation: Validation) -> Mapping[str, asyncio.Future[ApplyResult]]:
        return {self.name: self.reconciler.submit_nowait(validation)}

    def unavailable_because(self, name: str) -> str:
        return self.reconciler.unavailable_because


def objects_by_id(document: Any) -> dict[str, dict[str, Any]]:
    """Every object carrying an `@id` anywhere in a Caddy config, by that id (as the admin API's /id/ finds it)."""
    found: dict[str, dict[str, Any]] = {}
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("@id"), str):
                found[item["@id"]] = item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def ids_in(document: Any, prefix: str) -> set[str]:
    """Every `@id` starting with `prefix` anywhere in a Caddy config, the prefix removed."""
    return {ident.removeprefix(prefix) for ident in objects_by_id(document) if ident.startswith(prefix)}
