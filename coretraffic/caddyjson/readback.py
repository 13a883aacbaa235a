"""coretraffic's hosts read back from a Caddy config: what `render` wrote, or what a running Caddy holds.

Pure. The config is read from its JSON alone, so it may be one coretraffic never rendered: hosts are found by
their `@id` (`layout.route_id`) at any depth, and what a host's node says about it is read in one place
(`_host_state`), so a new server layout needs only that function adapted. `diff` compares two such readings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from coretraffic.caddyjson.layout import (
    ACCOUNT_PASSWORD,
    ACCOUNT_USER,
    ACCOUNTS_PATH,
    JSON,
    LOAD_PEM_PATH,
    PEM_CERTIFICATE,
    PEM_KEY,
    VERSION_HEADER,
    join_dial,
    pem_owner,
    route_id_host,
)
from coretraffic.caddyjson.ownership import part_path, unmanaged_parts
from coretraffic.caddyjson.tree import DROP, Path, get_in, replaced, set_in


@dataclass(frozen=True)
class HostState:
    """One host as a Caddy config serves it."""

    upstreams: tuple[str, ...]
    account: tuple[str, str] | None = field(repr=False)  # (user, bcrypt hash)
    version: str | None
    pem: tuple[str, str] | None = field(repr=False)  # (certificate chain, private key) from `load_pem`
    node: JSON = field(repr=False, compare=False)  # the JSON holding the host's `@id`
    path: Path = field(compare=False)  # where `node` sits in the config


@dataclass(frozen=True)
class CaddyView:
    """A Caddy config split into coretraffic's hosts, the rest of what it renders, and what it does not own."""

    hosts: dict[str, HostState]
    residue: Any  # the config without host routes, host certificates and unmanaged parts
    unmanaged: dict[str, Any]  # "server NAME" / "app NAME" -> its JSON


def read_config(config: Any) -> CaddyView:
    """What a Caddy config (as `GET /config/` returns it, or as rendered) holds, seen by coretraffic."""
    config = config if isinstance(config, dict) else {}  # Caddy answers `null` when it runs nothing
    unmanaged = unmanaged_parts(config)
    certificates = get_in(config, *LOAD_PEM_PATH)
    drops: dict[Path, Any] = {part_path(label): DROP for label in unmanaged}
    if isinstance(certificates, list):
        drops[LOAD_PEM_PATH] = DROP
    trimmed = replaced(config, drops)
    found: dict[str, tuple[JSON, JSON | None, Path]] = {}
    residue, _ = _scan(trimmed, (), None, found)
    by_tag = {pem_owner(entry): entry for entry in certificates} if isinstance(certificates, list) else {}
    states: dict[str, HostState] = {}
    summaries: dict[int, _RouteSummary] = {}
    for host, (node, route, path) in found.items():
        entry = by_tag.get(host)
        pem = (str(entry.get(PEM_CERTIFICATE)), str(entry.get(PEM_KEY))) if isinstance(entry, dict) else None
        states[host] = _host_state(node, route, pem, path, summaries)
    if isinstance(certificates, list):  # the certificates no host claims: the operator's own
        set_in(residue, LOAD_PEM_PATH, [entry for entry in certificates if pem_owner(entry) not in states])
    return CaddyView(states, residue, unmanaged)


# Keys whose values are data, never handlers: a bucket route's `map` holds two entries per host, and walking them
# was half of `diff`'s plan at 30,000 hosts.
_NO_HANDLERS_UNDER = frozenset({"mappings", "match"})


def handlers(node: Any) -> Iterator[JSON]:
    """Every handler at any depth (subroutes included), in document order."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for key, value in node.items():
            if isinstance(value, dict | list) and key not in _NO_HANDLERS_UNDER:
                yield from handlers(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                yield from handlers(item)


def _scan(
    node: Any, path: Path, route: JSON | None, found: dict[str, tuple[JSON, JSON | None, Path]]
) -> tuple[Any, bool]:
    """Find every host `@id` at any depth (with its enclosing route); return a copy of `node` without the list
    items that hold one, and whether `node` holds one."""
    if isinstance(node, dict):
        host = route_id_host(node.get("@id"))
        if host is not None:
            found[host] = (node, route, path)
            return None, True
        route = node if "handle" in node else route
        copied: JSON = {}
        holds = False
        for key, value in node.items():
            if key == "mappings" and isinstance(value, list):
                value, inner = _scan_mappings(value, (*path, key), route, found)
                holds |= inner
            elif isinstance(value, dict | list):
                value, inner = _scan(value, (*path, key), route, found)
                holds |= inner
            copied[key] = value
        return copied, holds
    if isinstance(node, list):
        kept = []
        holds = False
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                item, inner = _scan(item, (*path, index), route, found)
                if inner:
                    holds = True
                    continue
            kept.append(item)
        return kept, holds
    return node, False


def _scan_mappings(
    entries: list[Any], path: Path, route: JSON | None, found: dict[str, tuple[JSON, JSON | None, Path]]
) -> tuple[list[Any], bool]:
    """`_scan` of a `map` handler's entries, which are flat data (input, outputs) and may each be a host's: looked
    at one level deep, and kept uncopied (two entries a host: most of the nodes of a config)."""
    kept = []
    for index, entry in enumerate(entries):
        host = route_id_host(entry.get("@id")) if isinstance(entry, dict) else None
        if host is None:
            kept.append(entry)
        else:
            found[host] = (entry, route, (*path, index))
    return kept, len(kept) < len(entries)


@dataclass(frozen=True)
class _RouteSummary:
    dials: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]  # a shared route's `a` sources: (name, port), either may be a placeholder
    destinations: tuple[str, ...]  # the placeholders its `map` fills, in the order of an entry's `outputs`
    account: tuple[str, str] | None
    version: str | None


def _host_state(
    node: JSON, route: JSON | None, pem: tuple[str, str] | None, path: Path, summaries: dict[int, _RouteSummary]
) -> HostState:
    """What the JSON says about one host: the only place that knows how render lays a host out.

    The `@id` sits on the host's own route, whose handlers then tell everything; or on an entry of a `map` handler
    in a route shared by several hosts: the entry's `outputs` fill the map's placeholders, which the proxy's `a`
    sources read as their names and ports (a port may be a constant of the route), and the shared route's handlers
    hold the rest. A shared route is summarised once.
    """
    scope = node if "handle" in node else route or {}
    summary = summaries.get(id(scope))
    if summary is None:
        summary = summaries[id(scope)] = _summarise(scope)
    outputs = node.get("outputs")
    if isinstance(outputs, list):
        filled = dict(zip(summary.destinations, map(str, outputs), strict=False))
        upstreams = tuple(join_dial(filled.get(name, name), filled.get(port, port)) for name, port in summary.sources)
    else:
        upstreams = summary.dials
    return HostState(upstreams, summary.account, summary.version, pem, node, path)


def _summarise(route: JSON) -> _RouteSummary:
    dials: list[str] = []
    sources: list[tuple[str, str]] = []
    destinations: list[str] = []
    account: tuple[str, str] | None = None
    version: str | None = None
    for handler in handlers(route):
        kind = handler.get("handler")
        if kind == "reverse_proxy":
            dials += [str(u.get("dial")) for u in handler.get("upstreams", []) if isinstance(u, dict)]
            found = get_in(handler, "dynamic_upstreams", "sources")
            if isinstance(found, list):
                sources += [(str(s.get("name")), str(s.get("port"))) for s in found if isinstance(s, dict)]
        elif kind == "map" and not destinations:
            destinations = [str(d) for d in handler.get("destinations", [])]
        elif kind == "authentication" and account is None:
            accounts = get_in(handler, *ACCOUNTS_PATH)
            if isinstance(accounts, list) and accounts and isinstance(accounts[0], dict):
                account = (str(accounts[0].get(ACCOUNT_USER)), str(accounts[0].get(ACCOUNT_PASSWORD)))
        elif kind == "headers" and version is None:
            values = get_in(handler, "response", "set", VERSION_HEADER)
            if isinstance(values, list) and values:
                version = str(values[0])
    return _RouteSummary(tuple(dials), tuple(sources), tuple(destinations), account, version)
