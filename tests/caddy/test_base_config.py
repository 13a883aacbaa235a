"""The operator's base config through the bundled `caddy adapt`: what it carries, and how its mistakes read.

A real Caddy binary adapts each file; an error names the operator's file, its line and Caddy's message, never
the sentinel site coretraffic appends or Caddy's standard input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coretraffic.caddy.adapt import SHIPPED_BASE_CONFIG, load_base_config
from coretraffic.caddy.process import find_caddy_binary
from coretraffic.caddyjson.base import BASE_SENTINEL_HOST
from coretraffic.errors import BaseConfigError

REPOSITORY_BASE = SHIPPED_BASE_CONFIG


def adapt_error(path: Path) -> str:
    with pytest.raises(BaseConfigError) as caught:
        load_base_config(path, find_caddy_binary(), 7999, 8000)
    message = str(caught.value)
    assert BASE_SENTINEL_HOST not in message and "/dev/stdin" not in message
    assert "\n" not in message and '{"level"' not in message
    return message


def test_the_repositorys_base_config_carries_its_server_options() -> None:
    base = load_base_config(REPOSITORY_BASE, find_caddy_binary(), 7999, 8000)
    assert base.server_defaults == {"read_header_timeout": 10_000_000_000, "idle_timeout": 120_000_000_000}
    assert base.config["apps"]["http"]["grace_period"] == 10_000_000_000
    assert base.config["apps"]["http"]["servers"] == {}  # the sentinel's server is taken apart again


def test_an_unclosed_brace_names_the_operators_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "Caddyfile"
    path.write_text('{\n\tgrace_period 5s\n}\n:9100 {\n\trespond "hi"\n')
    message = adapt_error(path)
    assert message.startswith(f"caddy could not adapt base config {path}: ")
    assert f"{path}:5" in message


def test_an_unknown_global_option_names_the_file_line_and_option(tmp_path: Path) -> None:
    path = tmp_path / "Caddyfile"
    path.write_text("{\n\tgrace_period 5s\n\tbogus_option\n}\n")
    assert adapt_error(path).endswith(f"{path}:3: unrecognized global option: bogus_option")


def test_an_unreadable_base_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(BaseConfigError, match=r"cannot read base config .*missing"):
        load_base_config(tmp_path / "missing", find_caddy_binary(), 7999, 8000)
