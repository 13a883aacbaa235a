"""The connection to a Caddy's admin API: plain for a socket or loopback, mutual TLS for a remote admin gate.

A remote Caddy is reached through its admin gate (docs/caddy.md, "Remote admin"): a TLS server that admits only
clients with a certificate from the operator's CA and proxies them to that Caddy's local admin socket. The driver
presents `--admin-client-cert`/`--admin-client-key` and accepts only a server certificate signed by `--admin-ca`
(no system roots). The files are read here, once, at start: a missing or unreadable one stops the driver with a
line naming the flag and the path; nothing of their content ever reaches a log or an error.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from coretraffic.caddy.admin import AdminAddress, plain_transport
from coretraffic.errors import UsageError
from coretraffic.settings import Settings


def transport_for(
    address: AdminAddress, settings: Settings, *, server_name: str | None = None
) -> httpx.AsyncBaseTransport:
    """The transport `CaddyAdmin` uses for `address`: mutual TLS for a remote one, refused at start without its
    material. The gate's certificate is checked against the address's host name, or against `server_name` for
    an instance dialled by IP address under its service's DNS name (discovery): every gate holds one
    certificate for that name, since no certificate can list pod addresses ahead of time."""
    if not address.is_remote:
        return plain_transport(address)
    transport = httpx.AsyncHTTPTransport(verify=mutual_tls_context(settings))
    return transport if server_name is None else _ServerNamed(transport, server_name)


def mutual_tls_context(settings: Settings) -> ssl.SSLContext:
    """Client side of the admin gate's mutual TLS: the driver's certificate, and only the operator's CA trusted."""
    cert, key, ca = settings.admin_client_cert, settings.admin_client_key, settings.admin_ca
    if cert is None or key is None or ca is None:
        raise UsageError("an https --caddy-admin needs --admin-client-cert, --admin-client-key and --admin-ca")
    for flag, path in (("--admin-client-cert", cert), ("--admin-client-key", key), ("--admin-ca", ca)):
        _readable(flag, path)
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    except ssl.SSLError as exc:
        reason = exc.reason or exc.__class__.__name__
        raise UsageError(f"--admin-ca {ca}: not a PEM CA certificate ({reason})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        # The reason is OpenSSL's short code (say KEY_VALUES_MISMATCH), never the key's bytes.
        raise UsageError(
            f"--admin-client-cert {cert} / --admin-client-key {key}: not a matching PEM certificate and key "
            f"({exc.reason or exc.__class__.__name__})"
        ) from None
    return context


def _readable(flag: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None


class _ServerNamed(httpx.AsyncBaseTransport):
    """Every request sent with `server_name` as its TLS server name (SNI, and the name the certificate must carry)
    and as its `Host`: with client certificates required, Caddy refuses (421) a Host that is not the SNI's."""

    def __init__(self, inner: httpx.AsyncBaseTransport, server_name: str) -> None:
        self._inner = inner
        self._server_name = server_name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": self._server_name}
        port = f":{request.url.port}" if request.url.port is not None else ""
        request.headers["Host"] = f"{self._server_name}{port}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
