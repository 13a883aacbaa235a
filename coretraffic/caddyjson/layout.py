"""Where coretraffic's parts sit in a Caddy config: what `render` writes and everything else reads back.

Pure. The server and app names, the `@id` formats and where each `@id` sits, the shape of a certificate entry
and of a basic-auth account, and which host a numbered part of the config belongs to. `render` writes by these;
`ownership`, `readback` (and through it `diff`), `redact` and the reconciler's search for the host Caddy refused
read by them, so a change of layout is made here once.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

JSON = dict[str, Any]

HTTP_SERVER = "coretraffic_http"
HTTPS_SERVER = "coretraffic_https"
METRICS_SERVER = "coretraffic_metrics"  # Caddy's /metrics on a listener of its own (`traffic`)
MANAGED_SERVERS = (HTTP_SERVER, HTTPS_SERVER, METRICS_SERVER)
MANAGED_APPS = ("http", "tls")  # rendered whole: the base config's parts of them merged with coretraffic's
VERSION_HEADER = "servezone_coretraffic_version"

# Every host keeps this `@id` plus its name: on its own route, or on its entry in a bucket route's `map`.
ROUTE_ID_PREFIX = "coretraffic_route_"
NOT_FOUND_ID = "coretraffic_not_found"  # the HTTPS server's last route: any other Host gets a 404
# Before the wildcards: names whose config was refused that a wildcard would take (`withheld`); they get a 503.
WITHHELD_ID = "coretraffic_withheld"
HTTPS_ROUTES_PATH = ("apps", "http", "servers", HTTPS_SERVER, "routes")
# The config's marker: this prefix and a digest of everything the config is rendered from, on the HTTP server's
# one route, so that a cheap `GET /id/...` tells whether Caddy still runs what was applied.
CONFIG_ID_PREFIX = "coretraffic_config_"
MARKER_PATH = ("apps", "http", "servers", HTTP_SERVER, "routes", 0, "@id")
# The HTTP server's `@id`: this prefix and the base config's servers and apps (" server:NAME app:NAME", names
# %-quoted), so that `ownership` can tell them from parts someone else put into Caddy. No '"' may appear in an
# `@id`: Caddy strips them from the JSON with a regular expression that stops at the first one.
BASE_PARTS_PREFIX = "coretraffic_base_parts"
BASE_PARTS_PATH = ("apps", "http", "servers", HTTP_SERVER, "@id")

# The base's own certificates come first, then one entry per host, tagged with the host's name.
LOAD_PEM_PATH = ("apps", "tls", "certificates", "load_pem")
PEM_CERTIFICATE, PEM_KEY = "certificate", "key"  # of a `load_pem` entry (the chain, the private key)
ACCOUNTS_PATH = ("providers", "http_basic", "accounts")  # in an `authentication` handler
ACCOUNT_USER, ACCOUNT_PASSWORD = "username", "password"  # of an `http_basic` account (the user, the hash)

# How Caddy's load errors name the part it refused: `load_pem` entry N, or route N of a server.
_PEM_PAIR = re.compile(r"PEM pair (\d+)")
_HTTPS_ROUTE = re.compile(rf"server {HTTPS_SERVER}: .*?route (\d+)")


# The Caddy log render adds for request errors, and the Caddy logger it takes them from.
REQUEST_ERRORS_LOG = "coretraffic_request_errors"
REQUEST_ERRORS_LOGGER = "http.log.error"
# The access log `traffic` adds, and the Caddy logger the HTTPS server writes it to.
ACCESS_LOG = "coretraffic_access"
ACCESS_LOGGER = "http.log.access." + ACCESS_LOG

# Placeholders a bucket route's `map` fills per host: upstream N's address (and its port, where the bucket's hosts
# do not share their ports), read by the bucket's `a` source N.
UPSTREAM_SLOT_PREFIX = "coretraffic_upstream_"


def upstream_slot(index: int, part: str) -> str:
    return f"{{{UPSTREAM_SLOT_PREFIX}{index}_{part}}}"


def split_dial(dial: str) -> tuple[str, str]:
    """`10.0.0.1:8080` or `[::1]:8080` -> (address without brackets, port), as a bucket's map and sources hold them."""
    address, _, port = dial.rpartition(":")
    return address.removeprefix("[").removesuffix("]"), port


def join_dial(address: str, port: str) -> str:
    """The inverse of `split_dial`: a dial as validation writes it."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def route_id(host: str) -> str:
    return ROUTE_ID_PREFIX + host


def route_id_host(ident: object) -> str | None:
    """The host an `@id` belongs to, or None for any other `@id`."""
    return ident.removeprefix(ROUTE_ID_PREFIX) if isinstance(ident, str) and ident.startswith(ROUTE_ID_PREFIX) else None


def route_hosts(route: JSON) -> list[str]:
    """The hosts a route's matchers name."""
    return [host for matcher in route.get("match", []) for host in matcher.get("host", [])]


def config_id(config: Any) -> str | None:
    """The `@id` that marks a rendered config, or None for a config coretraffic did not render."""
    marker = _at(config, MARKER_PATH)
    return marker if isinstance(marker, str) and marker.startswith(CONFIG_ID_PREFIX) else None


def base_parts_id(apps: Iterable[str], servers: Iterable[str]) -> str:
    """The `@id` recording a base config's apps (those coretraffic does not render whole) and servers."""
    parts = [("app", name) for name in apps if name not in MANAGED_APPS]
    parts += [("server", name) for name in servers]
    return BASE_PARTS_PREFIX + "".join(f" {kind}:{urllib.parse.quote(name, safe='')}" for kind, name in sorted(parts))


def base_parts_record(config: Any) -> str | None:
    """The `@id` in which render recorded the base config's parts, or None for a config it did not render."""
    record = _at(config, BASE_PARTS_PATH)
    return record if isinstance(record, str) and record.startswith(BASE_PARTS_PREFIX) else None


def base_parts_recorded(config: Any) -> frozenset[str]:
    """The base config's parts ("app NAME", "server NAME", as `ownership` labels them) recorded in a config
    coretraffic rendered; none for any other config."""
    record = base_parts_record(config)
    if record is None:
        return frozenset()
    parts = (token.partition(":") for token in record.removeprefix(BASE_PARTS_PREFIX).split())
    return frozenset(f"{kind} {urllib.parse.unquote(name)}" for kind, _, name in parts)


def pem_entry(host: str, certificate: str, key: str) -> JSON:
    return {PEM_CERTIFICATE: certificate, PEM_KEY: key, "tags": [host]}


def pem_owner(entry: Any) -> str | None:
    """The host a `load_pem` entry is tagged with; None for an entry without tags (the base's own)."""
    tags = entry.get("tags") if isinstance(entry, dict) else None
    return str(tags[0]) if isinstance(tags, list) and tags else None


def account(user: str, password_hash: str) -> JSON:
    return {ACCOUNT_USER: user, ACCOUNT_PASSWORD: password_hash}


def certificate_owners(config: JSON, hosts: Sequence[str]) -> list[str | None]:
    """Which host each `load_pem` entry belongs to (None for the base's own), to map Caddy's 'PEM pair N'.

    `hosts` are the hosts the config was rendered with: their entries come last.
    """
    entries = _at(config, LOAD_PEM_PATH) or []
    foreign = len(entries) - len(hosts)
    return [None] * foreign + [pem_owner(entry) for entry in entries[foreign:]]


def https_route_owner(config: JSON, index: int) -> str | None:
    """The host whose own route is the HTTPS server's route `index`; None for a bucket route (its error is not
    one host's fault), the 404 route, or no such route."""
    routes = config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    hosts = route_hosts(routes[index]) if index < len(routes) else []
    return hosts[0] if len(hosts) == 1 else None


def culprits(error: str, config: JSON, hosts: Sequence[str]) -> list[tuple[str, str]]:
    """The hosts a Caddy load error for `config` (rendered with `hosts`) points at, with the field to blame."""
    found: list[tuple[str, str]] = []
    match = _PEM_PAIR.search(error)
    if match:
        owners = certificate_owners(config, hosts)
        index = int(match.group(1))
        owner = owners[index] if index < len(owners) else None
        if owner is not None:
            found.append((owner, "publicKey"))
    match = _HTTPS_ROUTE.search(error)
    if match:
        owner = https_route_owner(config, int(match.group(1)))
        if owner is not None:
            found.append((owner, "config"))
    return found


def _at(node: Any, path: Sequence[str | int]) -> Any:
    try:
        for key in path:
            node = node[key]
    except (KeyError, IndexError, TypeError):
        return None
    return node
