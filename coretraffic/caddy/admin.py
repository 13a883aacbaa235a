"""Caddy's admin API, over a unix socket, loopback TCP, or mutual TLS to a remote Caddy's admin gate (httpx).

The edge where the driver talks to the data plane: `load` a whole config, read the config back, ask whether a
given `@id` exists, list the upstreams Caddy counts failures against. Errors are sorted into what the reconciler
needs to decide: `CaddyUnavailable` (connection refused, timeout, 5xx: try again), `LoadInDoubt` (a load was sent
but its answer never came: Caddy may still be applying it) and `CaddyRejected` (4xx: the config itself is wrong,
retrying will not help).
"""

from __future__ import annotations

import errno
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from coretraffic.errors import CaddyRejected, CaddyUnavailable, CaddyUnreachable, LoadInDoubt
from coretraffic.settings import AdminAddress, host_port

# Reading the whole config back: 11 MB at 10,000 routes in about 74 ms (docs/caddy.md); room for a busy box.
READ_CONFIG_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
PROBE_TIMEOUT = httpx.Timeout(5.0)
# Failures after which the request cannot have reached Caddy: anything else during a load leaves it in doubt.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# What an admin gate answers when its connection to Caddy failed: before the load reached Caddy or after, it
# cannot tell (docs/caddy.md, "Remote admin"), so a load it answers so is in doubt.
_GATE_LOST_IT = (502, 504)


@dataclass(frozen=True)
class LoadTimeout:
    """How long to wait for Caddy's answer to a load, from the config's size.

    Caddy takes about 0.2 s per MB of config (docs/caddy.md, "Cost of a load"); ten times that plus a base
    leaves room for a busy box. A load that outlasts it is not lost: it goes on inside Caddy (`LoadInDoubt`).
    """

    base_s: float = 60.0
    per_mb_s: float = 2.0

    def for_size(self, size: int) -> httpx.Timeout:
        return httpx.Timeout(self.base_s + self.per_mb_s * size / 1e6, connect=5.0)


def plain_transport(address: AdminAddress) -> httpx.AsyncHTTPTransport:
    """The connection to a local admin API (a unix socket or loopback TCP)."""
    # verify=False: plain HTTP, and loading the CA bundle for TLS it never uses costs ~40 ms a client.
    return httpx.AsyncHTTPTransport(uds=address.location if address.kind == "unix" else None, verify=False)


class CaddyAdmin:
    def __init__(
        self,
        address: AdminAddress,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        load_timeout: LoadTimeout = LoadTimeout(),
    ) -> None:
        """`transport` replaces the connection to `address`: mutual TLS for a remote one (`admin_tls.transport_for`),
        or in tests `httpx.MockTransport` as a fake Caddy."""
        self.address = address
        self.load_timeout = load_timeout
        base_url = "http://localhost" if address.kind == "unix" else f"{address.kind}://{address.location}"
        if transport is None:
            if address.is_remote:
                raise ValueError(f"{address.name}: a remote admin address needs its mutual-TLS transport")
            transport = plain_transport(address)
        # No Origin header is ever sent: Caddy rejects a disallowed one. On a loopback address other than
        # 127.0.0.1 Caddy refuses its own address as Host (403), but takes localhost (docs/caddy.md). Behind a
        # gate, `admin_tls` sets the Host the gate requires.
        headers = {"Host": f"localhost:{host_port(address.location)[1]}"} if address.kind == "http" else {}
        self._client = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=PROBE_TIMEOUT, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def load(self, body: bytes) -> None:
        """Load `body` as Caddy's whole config; `LoadInDoubt` when it was sent and no answer came."""
        try:
            await self._request(
                "POST",
                "/load",
                content=body,
                timeout=self.load_timeout.for_size(len(body)),
                headers={"Content-Type": "application/json"},
            )
        except CaddyUnavailable as exc:
            if isinstance(exc.__cause__, httpx.TransportError) and not isinstance(exc.__cause__, _NOT_SENT):
                raise LoadInDoubt(str(exc)) from exc.__cause__
            if self.address.is_remote and exc.status in _GATE_LOST_IT:
                raise LoadInDoubt(str(exc)) from exc
            raise

    async def get_config(self) -> Any:
        response = await self._request("GET", "/config/", timeout=READ_CONFIG_TIMEOUT)
        return orjson.loads(response.content)  # 11 MB at 10,000 routes: a quarter of json's time

    async def config_etag(self) -> str:
        """The ETag of the whole running config: it changes with any edit, by anyone."""
        response = await self._request("GET", "/config/", timeout=READ_CONFIG_TIMEOUT)
        return str(response.headers.get("etag", ""))

    async def has_id(self, object_id: str, timeout: httpx.Timeout = PROBE_TIMEOUT) -> bool:
        """Whether Caddy's running config holds an object with this `@id`.

        Caddy serialises reads with config changes: while a load runs, the answer waits until it is done.
        """
        try:
            await self._request("GET", f"/id/{object_id}", timeout=timeout)
        except CaddyRejected:
            return False
        return True

    async def upstreams(self) -> list[dict[str, Any]]:
        """Caddy's upstream addresses with their in-flight requests and the failures it currently counts against
        them (`GET /reverse_proxy/upstreams`: `address`, `num_requests`, `fails`)."""
        response = await self._request("GET", "/reverse_proxy/upstreams")
        listed = orjson.loads(response.content)
        return [entry for entry in listed if isinstance(entry, dict)] if isinstance(listed, list) else []

    async def ping(self) -> None:
        await self._request("GET", "/config/admin")

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except (httpx.TransportError, ssl.SSLError) as exc:
            # ssl.SSLError: in TLS 1.3 a gate that refuses the driver's certificate says so on the first read.
            raise CaddyUnreachable(self.address.name, why_unreachable(exc)) from exc
        status = response.status_code
        if status >= 500:
            raise CaddyUnavailable(f"Caddy admin API answered HTTP {status}: {_error_text(response)}", status)
        if response.status_code >= 400:
            raise CaddyRejected(response.status_code, _error_text(response))
        return response


def why_unreachable(exc: BaseException) -> str:
    """A few words for why a connection failed (`no such socket`, `connection refused`), never an exception repr:
    to a Caddy admin API, or to a driver's status server (`coretraffic status`, `hosts`)."""
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    cause: BaseException | None = exc
    while cause is not None:  # httpx wraps httpcore's error, which wraps the OSError that says what happened
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause.strerror or 'handshake refused'}"
        if isinstance(cause, OSError) and cause.errno is not None:
            return "no such socket" if cause.errno == errno.ENOENT else os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    return " ".join(str(exc).split()) or type(exc).__name__


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:2000]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip()[:2000]
