"""The routes file of the one-shot commands (`check`, `render`, `diff`): required for them, optional for `run`."""

from __future__ import annotations

from pathlib import Path

from coretraffic.errors import UsageError
from coretraffic.settings import Settings


def required_routes(settings: Settings) -> Path:
    if settings.routes is None:
        raise UsageError("--routes FILE (or CORETRAFFIC_ROUTES) is required")
    return settings.routes
