"""The operator's base config as `render` merges into it: split from its adapted form, checked for clashes.

Pure. `coretraffic.caddy.adapt` runs `caddy adapt` on the base Caddyfile with a placeholder site appended
(`BASE_SENTINEL_HOST`) and hands the result to `base_from_adapted`, which takes the placeholder apart again and
refuses a base that defines a server or a port coretraffic manages.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from coretraffic.caddyjson.layout import JSON, MANAGED_SERVERS, route_hosts
from coretraffic.errors import BaseConfigError

# The Caddyfile adapter only emits http-app options (grace_period, `servers {}` defaults) when a site exists, so
# the base is adapted with this placeholder site appended; its server is then taken apart again.
BASE_SENTINEL_HOST = "coretraffic-base.invalid"


@dataclass(frozen=True)
class BaseConfig:
    """The operator's Caddy config, minus the sentinel server, plus the server options it carried."""

    config: JSON = field(default_factory=dict)
    server_defaults: JSON = field(default_factory=dict)


def base_from_adapted(adapted: JSON, http_port: int, https_port: int) -> BaseConfig:
    """Split the adapted base (with the sentinel site) into the config to merge into and server defaults."""
    config = copy.deepcopy(adapted)
    servers: JSON = config.get("apps", {}).get("http", {}).get("servers", {})
    server_defaults: JSON = {}
    for name, server in list(servers.items()):
        routes = server.get("routes", [])
        # The sentinel may share its server with an operator's own site on the same listener: drop its route only.
        kept = [route for route in routes if route_hosts(route) != [BASE_SENTINEL_HOST]]
        if len(kept) != len(routes):
            server_defaults = {k: v for k, v in server.items() if k not in ("listen", "routes")}
            if not kept:
                del servers[name]
                continue
            server["routes"] = kept
        if name in MANAGED_SERVERS:
            raise BaseConfigError(f"base config defines server {name!r}, which coretraffic manages")
        for address in server.get("listen", []):
            if listen_ports(address) & {http_port, https_port}:
                raise BaseConfigError(
                    f"base config server {name!r} listens on {address!r}, a port coretraffic manages "
                    f"(HTTP {http_port}, HTTPS {https_port})"
                )
    return BaseConfig(config, server_defaults)


def listen_ports(address: str) -> set[int]:
    """Ports of a Caddy listen address such as ':443', 'tcp/[::]:80' or '127.0.0.1:8000-8010'."""
    if address.startswith(("unix/", "unixgram/", "unixpacket/")):
        return set()  # a socket path, whatever it ends with
    _, _, port_part = address.rpartition(":")
    low, _, high = port_part.partition("-")
    try:
        return set(range(int(low), int(high or low) + 1))
    except ValueError:
        return set()  # a unix socket or similar: no TCP port to clash with
