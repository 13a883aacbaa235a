"""The Grafana dashboard against Grafana's published schema: `@grafana/schema`'s dashboard types, with the
TypeScript compiler (both from npm, `tests/grafana`, installed by .ci/run). The dashboard's JSON is written into
a TypeScript file as an object literal that must satisfy those types, so an unknown property, a missing required
one or a wrongly typed value fails the compile; a broken copy shows that it can."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import TESTS
from tests.support.prometheus import DASHBOARD

GRAFANA = TESTS / "grafana"
TSC = GRAFANA / "node_modules" / "typescript" / "bin" / "tsc"


def compile_errors(dashboard: dict[str, object], directory: Path) -> str:
    """What tsc says of `dashboard` against the schema ("" when it satisfies it)."""
    node = shutil.which("node")
    if node is None or not TSC.exists():
        missing = "node and `npm ci --prefix tests/grafana` are needed (.ci/run does both)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    source = (GRAFANA / "check.ts.in").read_text().replace("__DASHBOARD_JSON__", json.dumps(dashboard, indent=2))
    (directory / "check.ts").write_text(source)
    (directory / "node_modules").symlink_to(GRAFANA / "node_modules")
    checked = subprocess.run(
        [node, str(TSC), "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
         "--moduleResolution", "bundler", "--skipLibCheck", "check.ts"],
        cwd=directory, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


def test_the_dashboard_satisfies_grafanas_schema(tmp_path: Path) -> None:
    assert compile_errors(json.loads(DASHBOARD.read_text()), tmp_path) == ""


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        (lambda d: d.update(refreshh="30s"), "'\"refreshh\"' does not exist"),
        (lambda d: d["templating"]["list"][1].update(current={}), "missing the following properties"),
        (lambda d: d["panels"][1].update(gridPos={"h": "eight"}), "Type 'string' is not assignable to type 'number'"),
    ],
    ids=["unknown property", "missing required", "wrong type"],
)
def test_a_dashboard_that_breaks_the_schema_fails(
    breakage: Callable[[dict[str, Any]], None], error: str, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    breakage(dashboard)
    assert error in compile_errors(dashboard, tmp_path)
