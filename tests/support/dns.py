"""A real DNS server for tests: dnsmasq on 127.0.0.1 answering from a hosts file the test rewrites.

dnsmasq (Debian's `dnsmasq-base`, installed by `.ci/run`) answers only for the names in the file (no upstream
servers, no /etc/hosts) and re-reads the file on SIGHUP.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.support.ports import free_port


class Dnsmasq:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self._hosts = directory / "dns-hosts"
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, names: dict[str, str]) -> Dnsmasq:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not Path(binary).exists():
            missing = "dnsmasq is needed: apt-get install -y dnsmasq-base (.ci/run installs it)"
            if os.environ.get("CI"):
                pytest.fail(missing)
            pytest.skip(missing)
        self._write(names)
        self._process = await asyncio.create_subprocess_exec(
            binary, "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--user=root",
            "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={self.port}",
            "--no-resolv", "--no-hosts", f"--addn-hosts={self._hosts}", "--no-negcache", "--local-ttl=0",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stderr is not None
        async with asyncio.timeout(10):
            while b"started" not in await self._process.stderr.readline():
                assert self._process.returncode is None, "dnsmasq exited"
        self._drain = asyncio.create_task(self._drain_log(self._process.stderr))  # a full pipe would block it
        return self

    @staticmethod
    async def _drain_log(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def set(self, names: dict[str, str]) -> None:
        """Answer for `names` (name -> IPv4 address) from now on; any other name is NXDOMAIN."""
        self._write(names)
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        if self._drain is not None:
            await self._drain

    def _write(self, names: dict[str, str]) -> None:
        self._hosts.write_text("".join(f"{address} {name}\n" for name, address in names.items()))
