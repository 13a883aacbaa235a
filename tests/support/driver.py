"""The driver as an operator runs it: a `python -m coretraffic` child with its output collected line by line, the
Caddy processes it started, and its status server's readiness and pages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx


class Driver:
    """A `python -m coretraffic` child whose output is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "coretraffic", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def said(self, text: str) -> bool:
        return text in self.output

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        return code


def caddy_pids(state_dir: str) -> list[int]:
    """The Caddy processes a driver with `--state-dir state_dir` started (and has not stopped)."""
    found = subprocess.run(["pgrep", "-f", f"caddy run --pidfile {state_dir}/"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


async def status_pages(port: int) -> str:
    """The status server's `/status` and `/metrics`, as one text."""
    async with httpx.AsyncClient(timeout=10) as client:
        pages = [await client.get(f"http://127.0.0.1:{port}{path}") for path in ("/status", "/metrics")]
    return "\n".join(page.text for page in pages)


async def ready(port: int) -> bool:
    """Whether the status server on `port` answers `/readyz` with 200."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def status_document(port: int) -> dict[str, Any]:
    """The status server's `/status` document (empty while the server does not answer yet)."""
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            document: dict[str, Any] = (await client.get(f"http://127.0.0.1:{port}/status")).json()
    except httpx.TransportError:
        return {}
    return document


def command(*args: str) -> subprocess.CompletedProcess[str]:
    """A one-shot `coretraffic` command (`status`, `hosts`, ...) as an operator runs it: no `CORETRAFFIC_*`
    variable of the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")}
    return subprocess.run(
        [sys.executable, "-m", "coretraffic", *args], capture_output=True, text=True, timeout=60, env=env
    )


def write_routes(path: Path, configs: list[dict[str, Any]]) -> None:
    """Replace a driver's routes file with `configs` in one step."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(configs))
    os.replace(partial, path)  # the watcher sees the old file or the new one, never half of one
