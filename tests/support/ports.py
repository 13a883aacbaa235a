"""Free loopback ports: `free_port()` for one, `Ports` for the data plane's pair (the `ports` fixture)."""

from __future__ import annotations

import socket
from dataclasses import dataclass


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ports:
    """The HTTP and HTTPS ports the Caddy under test listens on."""

    http: int
    https: int
