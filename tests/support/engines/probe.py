"""Requests to the edge as its clients make them: to a node's own address and published ports, with the host's
name as Host header and TLS server name (SNI), the demo CA as the only trust. `ProbeLoop` keeps asking while
something is broken on purpose, and counts what failed."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from coretraffic import __version__
from coretraffic.caddyjson.layout import VERSION_HEADER

USER, PASSWORD = "operator", "engine-test-password"


@dataclass(frozen=True)
class Host:
    name: str
    auth: bool = False


def client(ca_file: Path) -> httpx.AsyncClient:
    # A new connection for every request: a probe must see a node that stopped serving, not a kept-alive socket.
    return httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(ca_file)),
        timeout=5,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def https_get(http: httpx.AsyncClient, address: str, host: str, *, auth: bool = True) -> httpx.Response:
    return await http.get(
        f"https://{address}/",
        headers={"Host": host},
        extensions={"sni_hostname": host},
        auth=(USER, PASSWORD) if auth else None,
    )


async def serves(http: httpx.AsyncClient, address: str, host: Host) -> bool:
    """The node at `address` serves `host` in full: 301 to HTTPS on 80; on 443 the host's certificate, its auth
    when it has one, the upstream's answer and the version header."""
    try:
        redirect = await http.get(f"http://{address}/probe", headers={"Host": host.name})
        if redirect.status_code != 301 or redirect.headers.get("location") != f"https://{host.name}/probe":
            return False
        if host.auth and (await https_get(http, address, host.name, auth=False)).status_code != 401:
            return False
        answer = await https_get(http, address, host.name)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and answer.headers.get(VERSION_HEADER) == __version__


async def serves_all(http: httpx.AsyncClient, addresses: Sequence[str], hosts: Sequence[Host]) -> bool:
    checks = [serves(http, address, host) for address in addresses for host in hosts]
    return all(await asyncio.gather(*checks))


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)  # monotonic times of the failures
    last_ok: float = 0.0
    longest_gap_s: float = 0.0  # the longest time between two served requests: seconds without service

    def record(self, good: bool, why: str = "") -> None:
        now = time.monotonic()
        if good:
            if self.last_ok:
                self.longest_gap_s = max(self.longest_gap_s, now - self.last_ok)
            self.last_ok = now
            self.ok += 1
        else:
            self.failed += 1
            self.failed_at.append(now)
            self.failures.append(why)


class ProbeLoop:
    """HTTPS GETs to every (node, host) in turn, as fast as they answer, until stopped; a tally per node."""

    def __init__(self, http: httpx.AsyncClient, addresses: Sequence[str], hosts: Sequence[Host]) -> None:
        self._http = http
        self._targets = [(address, host) for address in addresses for host in hosts]
        self.tallies = {address: Tally() for address in addresses}

    async def _run(self) -> None:
        while True:
            for address, host in self._targets:
                try:
                    answer = await https_get(self._http, address, host.name)
                    good, why = answer.status_code == 200, f"{host.name}: HTTP {answer.status_code}"
                except Exception as exc:
                    good, why = False, f"{host.name}: {type(exc).__name__} {exc}"
                self.tallies[address].record(good, why)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProbeLoop]:
        task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            ended_early = task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert not ended_early, "the probe loop stopped before the test did: its tallies are not the whole story"
