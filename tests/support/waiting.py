"""Waiting with a deadline: tests poll the condition they need instead of sleeping, and fail when it never comes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll `condition` until true; return the seconds it took, fail the test after `timeout`."""
    started = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
