"""Who owns which part of a Caddy config, so that `run` replaces only what is its own and leaves the rest alone.

Pure. `/load` replaces Caddy's whole config, so whatever a load does not contain is gone. coretraffic owns the
`http` and `tls` apps as rendered: its two servers and its hosts' certificates. The operator's base config owns
the servers and apps it defines, and render records their names in the HTTP server's `@id`
(`layout.BASE_PARTS_PREFIX`), so a part later dropped from the base config is still known as the base's and goes.
Every other server and app in the running Caddy is foreign: a Caddyfile, another tool or a person put it there.
The reconciler reads the foreign parts before its first load and after any change it did not make itself, and
`keep_foreign` carries them into every load as they were; `diff` goes through the same function.

Two limits, both reported rather than hidden:
- a foreign server listening on a port of the rendered config cannot run beside it (Caddy would refuse the whole
  config), so it is left out: coretraffic's hosts win;
- certificates and policies a foreign server set in the `tls` app are not carried, because that app is rendered
  whole (automatic HTTPS needs none there; other certificates belong in the base config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coretraffic.caddyjson.base import listen_ports
from coretraffic.caddyjson.layout import JSON, MANAGED_APPS, MANAGED_SERVERS, base_parts_recorded

Parts = dict[str, Any]  # "app NAME" / "server NAME" -> its JSON


def unmanaged_parts(config: Any) -> Parts:
    """The servers and apps of a config that coretraffic does not render itself (the base's and foreign ones)."""
    apps = _object(_object(config).get("apps"))
    servers = _object(_object(apps.get("http")).get("servers"))
    parts = {f"app {name}": app for name, app in apps.items() if name not in MANAGED_APPS}
    return parts | {f"server {name}": server for name, server in servers.items() if name not in MANAGED_SERVERS}


def part_path(label: str) -> tuple[str, ...]:
    """Where a part ("app NAME" / "server NAME") sits in a config."""
    kind, _, name = label.partition(" ")
    return ("apps", name) if kind == "app" else ("apps", "http", "servers", name)


def foreign_parts(config: Any) -> Parts:
    """The unmanaged parts of a running config that its base config did not put there."""
    from_base = base_parts_recorded(config)
    return {label: part for label, part in unmanaged_parts(config).items() if label not in from_base}


def keep_foreign(config: JSON, foreign: Mapping[str, Any]) -> tuple[JSON, dict[str, str]]:
    """`config` (as rendered) with the foreign parts it does not define added, and those left out with why.

    A name the rendered config defines (from the base config) keeps the base's version. `config` itself is not
    changed: the result shares all but the few objects on the way to the added parts.
    """
    apps = dict(config["apps"])
    http_app = apps["http"] = dict(apps["http"])
    servers = http_app["servers"] = dict(http_app["servers"])
    taken = {
        port for server in servers.values() for address in server.get("listen", []) for port in listen_ports(address)
    }
    left_out: dict[str, str] = {}
    for label, part in foreign.items():
        kind, _, name = label.partition(" ")
        place = apps if kind == "app" else servers
        if name in place:  # the base config defines it: the base's version
            continue
        addresses = part.get("listen", []) if kind == "server" and isinstance(part, dict) else []
        clash = sorted(
            {port for address in addresses if isinstance(address, str) for port in listen_ports(address)} & taken
        )
        if clash:
            left_out[label] = f"listens on port {', '.join(map(str, clash))}, which the rendered config uses"
        else:
            place[name] = part
    return {**config, "apps": apps}, left_out


def _object(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {}
