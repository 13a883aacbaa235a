"""Reading `net.ipv4.tcp_migrate_req`: its two values, and "unknown" where the kernel does not say.

The files are stand-ins written by the test (the real /proc file cannot be set to each value from here without
a network namespace; tests/system/test_status.py checks the real one through a running driver).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coretraffic.observe.listener_handover import MigrateReq, read_tcp_migrate_req, warn_when_off


@pytest.mark.parametrize(("content", "expected"), [("1\n", "on"), ("0\n", "off"), ("2\n", "unknown"), ("", "unknown")])
def test_the_sysctl_file_is_read_as_on_off_or_unknown(tmp_path: Path, content: str, expected: str) -> None:
    sysctl = tmp_path / "tcp_migrate_req"
    sysctl.write_text(content)
    assert read_tcp_migrate_req(sysctl) == expected


def test_a_kernel_without_the_sysctl_is_unknown(tmp_path: Path) -> None:
    assert read_tcp_migrate_req(tmp_path / "missing") == "unknown"


@pytest.mark.parametrize(("value", "warnings"), [("off", 1), ("on", 0), ("unknown", 0)])
def test_only_off_is_warned_about(caplog: pytest.LogCaptureFixture, value: MigrateReq, warnings: int) -> None:
    with caplog.at_level(logging.WARNING, logger="coretraffic.kernel"):
        warn_when_off(value)
    assert len([r for r in caplog.records if "tcp_migrate_req is 0" in r.getMessage()]) == warnings
