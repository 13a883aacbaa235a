"""The data plane as a client sees it: real HTTPS requests to 127.0.0.1 with the SNI of a host."""

from __future__ import annotations

import socket
import ssl

import httpx

from coretraffic.testing.pki import DemoCA


async def https_get(
    ca: DemoCA | str,
    port: int,
    host: str,
    path: str = "/",
    *,
    auth: tuple[str, str] | None = None,
    host_header: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A real HTTPS request to 127.0.0.1:`port` with SNI `host`, verified against the demo CA (object or PEM)."""
    trusted = ssl.create_default_context(cadata=ca if isinstance(ca, str) else ca.certificate_pem)
    async with httpx.AsyncClient(verify=trusted, timeout=10) as client:
        return await client.get(
            f"https://127.0.0.1:{port}{path}",
            headers={"Host": host_header or host, **(headers or {})},
            extensions={"sni_hostname": host},
            auth=auth,
        )


def served_certificate(port: int, sni: str) -> bytes:
    """The DER certificate Caddy presents for `sni` (no verification: we compare it ourselves)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


async def serves(ca: DemoCA, port: int, host: str) -> bool:
    """Whether `host` answers 200 over verified HTTPS on `port` (a transport or TLS error is a no)."""
    try:
        return (await https_get(ca, port, host)).status_code == 200
    except (httpx.TransportError, ssl.SSLError):
        return False
