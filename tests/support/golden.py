"""Golden files: where the cases live, the one way to rewrite them, and the fake password hasher that keeps
rendered goldens byte-stable.

Rewriting: run the golden tests with `UPDATE_GOLDEN=1` (exactly "1"); each golden test then writes what it got
and skips. Review `git diff tests/`, then run again without the variable: without it any difference fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coretraffic.core.validate import BasicAuth
from tests.support.paths import TESTDATA

RENDER_CASES = TESTDATA / "render"  # the renderer's cases (tests of render and redact)
DIFF_CASES = TESTDATA / "diff"  # `coretraffic diff`'s cases
UPDATE_VARIABLE = "UPDATE_GOLDEN"


def updating() -> bool:
    """Whether this run rewrites golden files instead of comparing them."""
    return os.environ.get(UPDATE_VARIABLE) == "1"


def update_if_asked(path: Path, actual: str) -> None:
    """With `UPDATE_GOLDEN=1`, write `actual` to `path` and skip the calling test; else do nothing (it compares)."""
    if updating():
        path.write_text(actual)
        pytest.skip(f"rewrote {path}: review the diff, then run again without {UPDATE_VARIABLE}")


def fake_hash(auth: BasicAuth) -> str:
    """Stands in for bcrypt (random salts): stable goldens, and visibly not the clear-text password."""
    return "$2b$04$fake-" + auth.user
