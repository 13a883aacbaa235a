"""The benchmark suite still runs end to end (`python -m benchmarks --smoke`): a few seconds per measurement.

Ratios from a smoke run on a shared machine are too noisy to hold to their goals here; the full run
(`just bench`) is where they are judged. This only proves every measurement completes and reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import paths

pytestmark = pytest.mark.timeout(300)


def test_smoke_run_prints_every_measurement() -> None:
    if not shutil.which("h2load"):
        # CI installs it (.ci/run, as root): there its absence is a failure; a developer without root may lack it.
        assert not os.environ.get("CI"), "h2load is needed: apt-get install -y nghttp2-client"
        pytest.skip("h2load is not installed (apt-get install -y nghttp2-client)")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=paths.REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| ") and " | " in line[2:]]
    measured = [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]]
    assert [m.split(",")[0].split(" /")[0] for m in measured] == [
        "worst host",
        "rps with per-host metrics",
        "/load with per-host metrics",
        "authed",
        "1 of 3 upstreams dead",
        "1 of 3 upstreams dead",
        "Caddy RSS after 5 reloads under traffic",
        "WebSockets echoing after 5 reloads",
        "Caddy RSS with 10 WebSockets across 5 reloads",
        "failed new-connection requests per 100 reloads",
        "driver CPU",
        "`coretraffic diff`",
        "/load of CA-issued",
        "driver CPU per update",
        "set to all 3 Caddies loaded",
        "update-to-serving",
        "/load through the mTLS admin gate",
        *("update-to-serving", "driver CPU", "cold start") * 2,  # the rows of `--scale`, on two small sizes
        "`coretraffic diff`",
        "raw",  # raw /load growth between the sizes
        "raw",  # RSA-only against EC
    ], completed.stdout
    assert " 0 failed" in completed.stdout  # no request lost to the reloads
    assert completed.stdout.count("; 0 of ") == 2, completed.stdout  # no request lost to the dead upstream
