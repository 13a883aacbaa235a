"""The operator's base config (`caddy/Caddyfile.base`): adapted to JSON by the bundled Caddy, once at start.

Edge of the loop (it runs `caddy adapt`); the pure splitting and clash checks are `caddyjson.base`.
A `.json` file is taken as Caddy JSON as it is.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from coretraffic.caddyjson.base import BASE_SENTINEL_HOST, BaseConfig, base_from_adapted
from coretraffic.errors import BaseConfigError


def load_base_config(path: Path | None, caddy_binary: Path, http_port: int, https_port: int) -> BaseConfig:
    if path is None:
        return BaseConfig()
    try:
        text = path.read_text()
    except OSError as exc:
        raise BaseConfigError(f"cannot read base config {path}: {exc.strerror or exc}") from None
    if path.suffix == ".json":
        try:
            adapted = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BaseConfigError(f"base config {path} is not valid JSON: {exc}") from None
    else:
        adapted = _adapt_caddyfile(text + f"\nhttp://{BASE_SENTINEL_HOST} {{\n}}\n", path, caddy_binary)
    if not isinstance(adapted, dict):
        raise BaseConfigError(f"base config {path} must be a JSON object")
    return base_from_adapted(adapted, http_port, https_port)


def _adapt_caddyfile(text: str, path: Path, caddy_binary: Path) -> object:
    completed = subprocess.run(
        [str(caddy_binary), "adapt", "--adapter", "caddyfile", "--config", "/dev/stdin"],
        input=text,
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise BaseConfigError(f"caddy could not adapt {path}: {completed.stderr.strip()}")
    return json.loads(completed.stdout)
