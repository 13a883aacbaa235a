"""`coretraffic diff`: what a route set would change in the running Caddy, before it happens."""

from __future__ import annotations

from coretraffic.settings import Settings


async def run_diff(settings: Settings, *, full: bool, as_json: bool) -> int:
    raise SystemExit("coretraffic: diff is not implemented yet")
