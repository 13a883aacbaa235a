"""The reliability bed: a load client that accounts for every request, the DEBUG log capture and the canary behind
the secrets checks, the hypothesis profiles, and a fast upstream in a Caddy of its own (the benchmarks' `Bed`).

Everything talks to 127.0.0.1 only. Nothing sleeps to synchronise: tests wait on conditions with deadlines (the
load client's short pause after a failed request paces a measurement during an outage, nothing more).
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from benchmarks.harness import Bed, start_upstream
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.render import JSON, BaseConfig, render
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route
from coretraffic.observe.logs import setup_logging
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.waiting import wait_until

# -- hypothesis ----------------------------------------------------------------------------------------------

# CI must not flake: the same examples on every run, and no example database carried between runs. Locally the
# examples vary from run to run (that is how new failures are found) and failures are replayed from the database.
settings.register_profile("reliability-ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("reliability-dev", print_blob=True)
settings.load_profile("reliability-ci" if os.environ.get("CI") == "true" else "reliability-dev")

# -- the secrets canary --------------------------------------------------------------------------------------

CANARY = "CANARY-rel-8d2e"
BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class Canary:
    """The secrets this suite hands out, and the check that none of them comes back in anything a person reads.

    Every private key carries the canary on a line before its PEM block (PEM parsers skip it, so the key stays
    valid), every password starts with it, and the body lines of every PEM handed out are remembered: a leak of
    any part of a key or certificate is found, not just the markers.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = {CANARY}
        self._certificates: set[str] = set()

    def route(self, ca: DemoCA, host: str, upstream_port: int, *, password: str | None = None) -> dict[str, Any]:
        config = demo_route(ca, host, upstream_port)
        config["privateKey"] = self.key(str(config["privateKey"]))
        self.certificate(str(config["publicKey"]))
        if password is not None:
            config["authentication"] = {"type": "Basic", "user": "alice", "pass": self.password(password)}
        return config

    def key(self, pem: str) -> str:
        self._secrets.update(_body_lines(pem))
        return f"{CANARY}-key\n{pem}"

    def certificate(self, pem: str) -> str:
        self._certificates.update(_body_lines(pem))
        return pem

    def password(self, text: str) -> str:
        return f"{CANARY}-{text}"

    def leaks(self, text: str, *, certificates: bool = True) -> list[str]:
        """What of the secrets is in `text`; `certificates=False` where showing certificates is the point."""
        needles = self._secrets | self._certificates if certificates else self._secrets
        found = [needle for needle in needles if needle in text]
        found += BCRYPT_HASH.findall(text)
        if "PRIVATE KEY-----" in text:
            found.append("a PEM private key marker")
        return found

    def check(self, text: str, where: str, *, certificates: bool = True) -> None:
        leaked = self.leaks(text, certificates=certificates)
        assert not leaked, f"secrets in {where}: {[secret[:24] + '...' for secret in leaked[:3]]}"


def _body_lines(pem: str) -> set[str]:
    return {line for line in pem.splitlines() if len(line) >= 16 and "-----" not in line}


@pytest.fixture
def canary() -> Canary:
    return Canary()


@pytest.fixture(autouse=True)
def debug_log(canary: Canary) -> Iterator[io.StringIO]:
    """Every test here runs with the driver's logging as `--log-level DEBUG --log-format json` sets it up (Caddy's
    lines included, on `coretraffic.caddy`), and ends with the canary searched in all of it."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "websockets")}
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    for handler in saved_handlers:  # pytest's own capture stays, so a failure still shows the log
        root.addHandler(handler)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in libraries.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)
    canary.check(stream.getvalue(), "the DEBUG log")


# -- a fast upstream: a second Caddy, never reloaded with the config under test ---------------------------------


@pytest.fixture
async def bed(caddy: CaddyProcess, admin: CaddyAdmin, short_tmp: Path) -> AsyncIterator[Bed]:
    """The spawned Caddy with a static upstream in a Caddy of its own: a Python upstream would share the test's
    CPU (and GIL) with the load client and the reconciler, and be what gives first; an upstream inside the Caddy
    under test would have its connections closed by every reload, which a real upstream does not."""
    upstream, port = await start_upstream(short_tmp / "upstream")
    yield Bed(caddy, admin, port)
    await upstream.stop()


def bed_renderer(bed: Bed) -> Callable[[Sequence[Route]], JSON]:
    hasher = BcryptHasher(cost=4)  # the cheapest cost: these tests check behaviour, not hash strength

    def render_routes(routes: Sequence[Route]) -> JSON:
        return render(routes, bed.settings, BaseConfig(), hasher)

    return render_routes


@pytest.fixture
async def bed_reconciler(bed: Bed) -> AsyncIterator[Reconciler]:
    reconciler = Reconciler(bed.admin, bed_renderer(bed))
    task = asyncio.create_task(reconciler.run())
    yield reconciler
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- the load client -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    started: float  # time.monotonic() when the request was first sent
    what: str
    # A transport error on a connection opened for this very request (or for its retry): the listener dropped a
    # new connection, as opposed to an HTTP error answer or an error on a reused keep-alive connection.
    fresh: bool


@dataclass
class LoadFigures:
    sent: int = 0  # requests; one retried after a keep-alive race counts once
    ok: int = 0
    retried: int = 0  # keep-alive races: closed before any response byte on a reused connection, sent again once
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def failed_fresh(self) -> int:
        return sum(f.fresh for f in self.failures)

    def failed_since(self, moment: float) -> list[Failure]:
        return [f for f in self.failures if f.started >= moment]

    def summary(self) -> str:
        kinds = collections.Counter(f.what for f in self.failures).most_common(4)
        return (
            f"sent {self.sent}, ok {self.ok}, failed {self.failed} ({self.failed_fresh} on new connections), "
            f"retried {self.retried}; failures: {kinds}"
        )


def opened_connection(events: Sequence[str]) -> bool:
    """Whether httpcore opened a connection for this request (its trace has `connect_tcp`) or reused one."""
    return "connection.connect_tcp.started" in events


def keep_alive_race(exc: httpx.TransportError, events: Sequence[str]) -> bool:
    """True for the one failure a client may retry on its own: an idempotent request on a reused keep-alive
    connection that the server closed (a reload closes idle ones) before a single byte of response came back.

    httpcore's trace tells both facts: a reused connection has no `connect_tcp` event, and no response head
    was read without `receive_response_headers.complete`.
    """
    answered = "http11.receive_response_headers.complete" in events
    closed = isinstance(exc, httpx.ReadError | httpx.WriteError) or (
        isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)
    )
    return not opened_connection(events) and not answered and closed


class LoadClient:
    """`connections` workers sending GETs to one host over HTTPS keep-alive connections until stopped.

    httpx does not retry an HTTP/1.1 request that loses the keep-alive race, so it is done here: once, on a new
    connection (as browsers and Go's client do), and counted apart. Any other failure (an error, a non-200) is
    recorded with the time its request started and whether it hit a connection opened for it.
    """

    def __init__(self, ca: DemoCA, port: int, host: str, connections: int = 8) -> None:
        self.host = host
        self.figures = LoadFigures()
        self._url = f"https://127.0.0.1:{port}/"
        self._connections = connections
        self._verify = ssl.create_default_context(cadata=ca.certificate_pem)
        self._client = self._new_client(connections)
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def _new_client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(verify=self._verify, timeout=10, limits=limits)

    async def __aenter__(self) -> LoadClient:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._connections)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)
        await self._client.aclose()

    async def answered(self, count: int, timeout: float = 30) -> None:
        """Until `count` more requests have succeeded than so far."""
        target = self.figures.ok + count

        async def reached() -> bool:
            return self.figures.ok >= target

        await wait_until(reached, timeout, f"{count} more successful requests ({self.figures.summary()})")

    async def _work(self) -> None:
        while not self._stop.is_set():
            if not await self._request():
                # Caddy is down: connection refused comes back at once; pace the measurement instead of spinning.
                await asyncio.sleep(0.02)

    async def _request(self) -> bool:
        started = time.monotonic()
        self.figures.sent += 1
        failure = await self._attempt(self._client, started)
        if failure is None:
            return True
        if failure is not _RETRY:
            self.figures.failures.append(failure)
            return False
        self.figures.retried += 1
        async with self._new_client(1) as once:
            failure = await self._attempt(once, started)
        if failure is None:
            return True
        self.figures.failures.append(Failure(started, f"retry: {failure.what}", failure.fresh))
        return False

    async def _attempt(self, client: httpx.AsyncClient, started: float) -> Failure | None:
        """None when answered 200; `_RETRY` for a lost keep-alive race; else what went wrong."""
        events: list[str] = []

        async def trace(name: str, info: dict[str, Any]) -> None:
            events.append(name)

        try:
            response = await client.get(
                self._url, headers={"Host": self.host}, extensions={"sni_hostname": self.host, "trace": trace}
            )
        except httpx.TransportError as exc:
            if keep_alive_race(exc, events):
                return _RETRY
            return Failure(started, f"{type(exc).__name__}: {exc}", opened_connection(events))
        if response.status_code == 200:
            self.figures.ok += 1
            return None
        return Failure(started, f"HTTP {response.status_code}", False)


_RETRY = Failure(0.0, "lost the keep-alive race", False)
