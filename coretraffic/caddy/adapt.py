"""The operator's base config: adapted to JSON by the bundled Caddy, once at start.

Edge of the loop (it runs `caddy adapt`); the pure splitting and clash checks are `caddyjson.base`.
A `.json` file is taken as Caddy JSON as it is.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from coretraffic.caddyjson.base import BASE_SENTINEL_HOST, BaseConfig, base_from_adapted
from coretraffic.errors import BaseConfigError

# The recommended global options (grace period, JSON logs, server timeouts), shipped in the package so that it
# is found from any directory: the demo's default, and the container image's.
SHIPPED_BASE_CONFIG = Path(__file__).with_name("Caddyfile.base")


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
    completed = _caddy_adapt(caddy_binary, path, text)
    if completed.returncode != 0:
        # The sentinel site appended to the text can be what Caddy trips over (after an unclosed brace, say):
        # adapting the operator's file alone names their file and line, not the sentinel on a line they never wrote.
        alone = _caddy_adapt(caddy_binary, path, None)
        failed = alone if alone.returncode != 0 else completed
        raise BaseConfigError(f"caddy could not adapt base config {path}: {_caddy_error(failed.stderr, path)}")
    return json.loads(completed.stdout)


def _caddy_adapt(caddy_binary: Path, path: Path, text: str | None) -> subprocess.CompletedProcess[str]:
    """`caddy adapt` of `text` (as if it were `path`), or of the file itself when `text` is None."""
    return subprocess.run(
        [
            str(caddy_binary),
            "adapt",
            "--adapter",
            "caddyfile",
            "--config",
            "/dev/stdin" if text is not None else str(path),
        ],
        input=text,
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=60,
        check=False,
    )


def _caddy_error(stderr: str, path: Path) -> str:
    """Caddy's error messages from its JSON log lines, naming the operator's file rather than standard input."""
    messages = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = {"level": "error", "msg": line}
        if isinstance(entry, dict) and entry.get("level") == "error":
            message = str(entry.get("msg", "")).removesuffix(" import chain: ['']")
            messages.append(message.replace("/dev/stdin", str(path)))
    return "; ".join(messages) or stderr.strip()
