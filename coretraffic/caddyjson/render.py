"""Caddy JSON from validated routes: the pure heart of the driver.

Third stop of the loop. `render` is a function of (routes, settings, operator base config, password hasher) with
no I/O, and the same input gives the same bytes, which is what lets the reconciler skip a reload when nothing
changed. Two servers are generated and merged into the operator's base config:

- `coretraffic_http` answers everything with a 301 to `https://{host}{uri}`;
- `coretraffic_https` terminates TLS with the certificates Coreflow sent (never ACME), and per host runs basic
  auth (optional), sets the version header and proxies to the upstreams; any other Host gets a 404.

Host dispatch without a cliff: Caddy matches a server's routes one after another, so 10,000 one-host routes cost
the last host ~2 ms a request (docs/caddy.md). Past `flat_max` hosts, plain hosts (no auth, no wildcard) are
grouped into bucket routes whose host matcher holds up to `bucket_size` hosts (Caddy binary-searches matchers of
more than 100 hosts), and inside a bucket a `map` handler picks the host's upstreams into placeholder slots.
Buckets hold hosts with the same number of upstreams, so no upstream gets extra weight, and mostly the same upstream
ports, which then need no placeholder (`_buckets`). Hosts with basic auth or a wildcard keep a route of their own,
after the buckets. Every host keeps an `@id` (`coretraffic_route_<host>`):
on its route, or on its entry in the bucket's map.

The HTTP server's route carries an `@id` made from a digest of everything the config is rendered from: a cheap
`GET /id/...` then tells whether Caddy still runs what was applied. Digesting the inputs, not the 11 MB of JSON
at 10,000 routes, spares a second serialisation. The HTTP server itself carries an `@id` naming the base config's
servers and apps, so that `ownership` can tell them from the parts of Caddy's config that are someone else's.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import (
    CONFIG_ID_PREFIX,
    HTTP_SERVER,
    HTTPS_SERVER,
    JSON,
    NOT_FOUND_ID,
    REQUEST_ERRORS_LOG,
    REQUEST_ERRORS_LOGGER,
    VERSION_HEADER,
    account,
    base_parts_id,
    pem_entry,
    route_id,
    split_dial,
    upstream_slot,
)
from coretraffic.caddyjson.traffic import TrafficSettings, add_traffic_observation
from coretraffic.core.validate import BasicAuth, Route

MAX_HEADER_BYTES = 32 * 1024
CERTIFICATE_CACHE_MIN = 10_000  # Caddy's own default capacity

PasswordHasher = Callable[[BasicAuth], str]


@dataclass(frozen=True)
class RenderSettings:
    version: str
    http_port: int = 7999
    https_port: int = 8000
    listen_host: str = ""
    http3: bool = False
    # Old configs stay pinned in memory by idle upstream connections until they time out (Caddy's default is 2
    # minutes: gigabytes after 100 reloads under traffic, docs/caddy.md); a short idle timeout bounds that.
    upstream_idle_timeout: str = "5s"
    # Toward upstreams (docs/caddy.md, "Upstreams that fail"): a dial that hangs and a response head that never
    # comes each end a try, so a frozen upstream costs one slow try, not a request held for ever.
    upstream_dial_timeout: str = "2s"
    upstream_response_timeout: str = "10s"
    # A failed try is retried on another upstream while the request has tried for less than this; longer than
    # the response timeout, so that a GET to a frozen upstream still gets its second try.
    upstream_try_duration: str = "15s"
    # How long one failure keeps an upstream address out of the selection (passive health, per ip:port).
    upstream_fail_duration: str = "5s"
    # Up to this many hosts, one route per host (simplest config, upstreams health-checkable); beyond, buckets.
    flat_max: int = 16
    # Hosts per bucket: > 100 for a binary-searched host matcher. Every bucket a request passes costs more than
    # the map entries it scans, so buckets are large (sizes measured: BENCHMARKS.md, "What moved the numbers").
    bucket_size: int = 1000
    # How long a WebSocket (or any upgraded stream) outlives the config it was opened under: without it every
    # reload closes every proxied stream (close code 1001). Each old config that still holds a stream stays in
    # memory until the delay ends (about 20 MB at 2,000 routes), so the delay bounds how many reloads' configs
    # can pile up; then its remaining streams are closed at once (docs/caddy.md, "Reloads and long-lived ...").
    stream_close_delay: str = "300s"
    # Off: with stapling on, every `/load` fetches OCSP for every certificate that names a responder and has no
    # fresh staple stored, synchronously, before it answers (docs/caddy.md).
    ocsp_stapling: bool = False
    # Request metrics, their listener and the access log (`traffic`); all off unless the driver's settings say.
    traffic: TrafficSettings = field(default_factory=TrafficSettings)


def render(routes: Sequence[Route], settings: RenderSettings, base: BaseConfig, hash_password: PasswordHasher) -> JSON:
    ordered = sorted(routes, key=lambda r: r.host)
    config = copy.deepcopy(base.config)
    # The base's `admin` block is kept but for its address: that is the loaded Caddy's (`with_admin_listen`).
    config.get("admin", {}).pop("listen", None)
    apps = config.setdefault("apps", {})
    http_app = apps.setdefault("http", {})
    http_app["http_port"] = settings.http_port
    http_app["https_port"] = settings.https_port
    servers = http_app.setdefault("servers", {})
    base_apps = base.config.get("apps", {})
    servers[HTTP_SERVER] = {
        **base.server_defaults,
        "@id": base_parts_id(base_apps, base_apps.get("http", {}).get("servers", {})),
        "listen": [f"{settings.listen_host}:{settings.http_port}"],
        "automatic_https": {"disable": True},
        "protocols": ["h1"],  # h2 and h3 need TLS; listing them only earns a warning per load
        "routes": [{"handle": [_redirect_to_https()]}],
    }
    servers[HTTPS_SERVER] = {
        # Caddy's basic-auth hash_cache keys its up to 1,000 entries per host on the password a client sent,
        # wrong guesses included; capping request headers (Go's default is 1 MB) caps what that cache can hold.
        # The operator's base config may set its own limit.
        "max_header_bytes": MAX_HEADER_BYTES,
        **base.server_defaults,
        "listen": [f"{settings.listen_host}:{settings.https_port}"],
        "automatic_https": {"disable": True},
        "tls_connection_policies": [{}],
        "protocols": ["h1", "h2", "h3"] if settings.http3 else ["h1", "h2"],
        "routes": [*_https_routes(ordered, settings, hash_password), _not_found()],
        "errors": {"routes": [_no_upstream_answered(settings)]},
    }
    # With error routes, Caddy logs a request's error at debug level only (docs/caddy.md): this log keeps the line.
    config.setdefault("logging", {}).setdefault("logs", {})[REQUEST_ERRORS_LOG] = {
        "writer": {"output": "stderr"},
        "encoder": {"format": "json"},
        "level": "DEBUG",
        "include": [REQUEST_ERRORS_LOGGER],
    }
    tls_app = apps.setdefault("tls", {})
    certificates = tls_app.setdefault("certificates", {})
    certificates["load_pem"] = [*certificates.get("load_pem", []), *_load_pem(ordered)]
    _tune_certificate_handling(tls_app, len(certificates["load_pem"]), settings)
    add_traffic_observation(config, settings.traffic)
    servers[HTTP_SERVER]["routes"][0]["@id"] = CONFIG_ID_PREFIX + _inputs_digest(ordered, settings, base, hash_password)
    return config


def _tune_certificate_handling(tls_app: JSON, certificates: int, settings: RenderSettings) -> None:
    """OCSP stapling and the certificate cache's capacity, merged with what the base config's `tls` app says.

    A base that sets `disable_ocsp_stapling` (the Caddyfile's `ocsp_stapling off`) keeps its value: the operator
    wrote it for this Caddy. The cache capacity is the larger of the base's and ours: past its capacity Caddy's
    cache scans itself on every insert to evict, and `load_pem` certificates are never evicted, so a smaller one
    only makes every load quadratic in the certificates; it saves no memory.
    """
    tls_app.setdefault("disable_ocsp_stapling", not settings.ocsp_stapling)
    cache = tls_app.setdefault("cache", {})
    # Twice the certificates: room for those of the previous config while the new one is provisioned.
    cache["capacity"] = max(cache.get("capacity", 0), CERTIFICATE_CACHE_MIN, 2 * certificates)


def with_admin_listen(config: JSON, listen: str) -> JSON:
    """`config` as loaded into the Caddy whose admin API listens on `listen` (a shallow copy; `config` is kept).

    Not part of `render`, so that one render (and its marker) serves several Caddies. Never left out of a load: a
    config without an `admin` block moves Caddy's admin API back to localhost:2019 and removes its unix socket.
    """
    return {**config, "admin": {**config.get("admin", {}), "listen": listen}}


def _inputs_digest(
    routes: Sequence[Route], settings: RenderSettings, base: BaseConfig, hash_password: PasswordHasher
) -> str:
    digest = hashlib.sha256(serialise({"base": base.config, "defaults": base.server_defaults}))
    digest.update(repr(settings).encode())
    for route in routes:
        auth = route.basic_auth
        parts = [route.host, *route.upstreams, route.certificate_pem, route.private_key_pem]
        if auth is not None:
            parts += [auth.user, hash_password(auth)]
        digest.update("\0".join(parts).encode() + b"\1")
    return digest.hexdigest()[:24]


def serialise(config: JSON) -> bytes:
    # orjson: 25 ms instead of 105 ms for the 11 MB of a 10,000-route config, byte for byte the same output.
    return orjson.dumps(config, option=orjson.OPT_SORT_KEYS)


def _redirect_to_https() -> JSON:
    return {
        "handler": "static_response",
        "status_code": 301,
        "headers": {"Location": ["https://{http.request.host}{http.request.uri}"]},
    }


def _no_upstream_answered(settings: RenderSettings) -> JSON:
    """The answer when the proxy gives up, in Caddy's status: 502 (every try failed), 503 (every upstream is
    marked down) or 504 (no response in time). A short plain body naming the host, never an address from inside
    the cluster; any other error keeps Caddy's own empty answer."""
    return {
        "match": [{"vars": {"{http.error.status_code}": ["502", "503", "504"]}}],
        "handle": [
            {
                "handler": "static_response",
                "status_code": "{http.error.status_code}",
                "headers": {"Content-Type": ["text/plain; charset=utf-8"], VERSION_HEADER: [settings.version]},
                "body": "{http.request.host}: no upstream answered\n",
            }
        ],
    }


def _not_found() -> JSON:
    return {
        "@id": NOT_FOUND_ID,
        "handle": [{"handler": "static_response", "status_code": 404, "body": "no route for this host\n"}],
    }


def _https_routes(routes: Sequence[Route], settings: RenderSettings, hash_password: PasswordHasher) -> list[JSON]:
    """The hosts' routes in the order Caddy tries them: every exact host before every wildcard.

    Caddy runs the first route whose host matcher matches, and `*.example.com` matches `shop.example.com`: a
    wildcard tried first would serve an exact host under it with the wildcard's upstreams and auth (or none).
    Exact first is the rule Caddy applies to certificates and its Caddyfile adapter, nginx and Traefik to hosts.
    Two wildcards never match the same name (a `*` stands for one label, and validation allows one, leading), so
    no order among them matters; they are sorted by name for stable bytes.
    """
    if len(routes) <= settings.flat_max:
        return [_host_route(r, settings, hash_password) for r in sorted(routes, key=_precedence)]
    own_route: list[Route] = []
    bucketable: list[Route] = []
    for route in routes:
        (bucketable if _bucketable(route) else own_route).append(route)
    buckets = _buckets(bucketable, settings.bucket_size)  # exact hosts only (`_bucketable`)
    return [
        *(_bucket_route(bucket, settings) for bucket in buckets),
        *(_host_route(r, settings, hash_password) for r in sorted(own_route, key=_precedence)),
    ]


def _precedence(route: Route) -> tuple[bool, str]:
    """Exact hosts first, then wildcards; by name within each."""
    return route.host.startswith("*."), route.host


def _buckets(routes: Sequence[Route], size: int) -> list[list[Route]]:
    """Hosts in buckets of up to `size`, each bucket of one upstream count (no upstream gets extra weight).

    Every placeholder a request reads makes the map scan its entries, so hosts that share their port list are
    bucketed together and the ports become constants of the bucket: one placeholder per upstream. A port list
    shared by fewer than a quarter bucket of hosts does not get buckets of its own (many small buckets would be
    many routes for every request to pass): its hosts share buckets by upstream count, with the ports mapped too.
    """
    by_ports: dict[tuple[str, ...], list[Route]] = {}
    for route in sorted(routes, key=lambda r: r.host):
        by_ports.setdefault(_ports(route), []).append(route)
    buckets: list[list[Route]] = []
    rare: list[Route] = []
    for _, group in sorted(by_ports.items(), key=lambda item: (len(item[0]), item[0])):
        if len(group) < size // 4:
            rare += group
            continue
        parts = -(-len(group) // size)  # as few buckets as hold the group, evenly filled: no one-host remainder
        share = -(-len(group) // parts)
        buckets += [group[i : i + share] for i in range(0, len(group), share)]
    rare.sort(key=lambda r: (len(r.upstreams), r.host))
    mixed: list[list[Route]] = []
    for route in rare:
        # Half as many hosts: each one's map is read for two placeholders per upstream, not one.
        if mixed and len(mixed[-1]) < size // 2 and len(mixed[-1][0].upstreams) == len(route.upstreams):
            mixed[-1].append(route)
        else:
            mixed.append([route])
    return buckets + mixed


def _bucketable(route: Route) -> bool:
    """Whether a host can share a bucket route: no basic auth (a map cannot choose it), no wildcard, and only IP
    addresses as upstreams. A DNS name keeps a route of its own, dialled as written: Go resolves it per new
    connection, where a bucket's `a` source would cache at most 100 names process-wide (docs/caddy.md)."""
    return route.basic_auth is None and not route.host.startswith("*.") and all(map(_is_ip_dial, route.upstreams))


def _is_ip_dial(dial: str) -> bool:
    """Whether a dial as validation writes it names an IP address: an IPv6 one is in brackets, an IPv4 one ends
    in digits, and a DNS name never ends in an all-numeric label (`normalise_host_name`). Parsing each address
    instead took 40% of render at 30,000 hosts."""
    address = dial.rpartition(":")[0]
    return address.startswith("[") or address.rpartition(".")[2].isdigit()


def _ports(route: Route) -> tuple[str, ...]:
    return tuple(split_dial(dial)[1] for dial in route.upstreams)


def _bucket_route(bucket: Sequence[Route], settings: RenderSettings) -> JSON:
    count = len(bucket[0].upstreams)
    addresses = [upstream_slot(i, "address") for i in range(count)]
    port_lists = {_ports(r) for r in bucket}
    ports: Sequence[str]
    if len(port_lists) == 1:  # the bucket's ports are constants of its sources: the map fills addresses only
        (ports,) = port_lists
        slots = addresses
        outputs = {r.host: [split_dial(dial)[0] for dial in r.upstreams] for r in bucket}
    else:
        ports = [upstream_slot(i, "port") for i in range(count)]
        slots = [slot for pair in zip(addresses, ports, strict=True) for slot in pair]
        outputs = {r.host: [part for dial in r.upstreams for part in split_dial(dial)] for r in bucket}
    # Exact inputs first: the usual lower-case Host finds its entry with plain string compares. The map compares
    # case-sensitively while Caddy's host matcher does not, so a mixed-case Host falls through to the
    # case-insensitive patterns after them: slower, but it reaches its own host and no other.
    mappings: list[JSON] = [{"@id": route_id(r.host), "input": r.host, "outputs": outputs[r.host]} for r in bucket]
    mappings += [{"input_regexp": f"(?i)^{re.escape(r.host)}$", "outputs": outputs[r.host]} for r in bucket]
    # Upstreams from an `a` source per slot, fed by the map: Caddy then keeps passive health per real ip:port,
    # where static placeholder dials would share one health state per slot among all the bucket's hosts. An IP
    # address needs no DNS lookup.
    sources = [{"source": "a", "name": name, "port": port} for name, port in zip(addresses, ports, strict=True)]
    upstreams: JSON = {"dynamic_upstreams": {"source": "multi", "sources": sources}}
    return {
        "match": [{"host": [r.host for r in bucket]}],
        "handle": [
            {"handler": "map", "source": "{http.request.host}", "destinations": slots, "mappings": mappings},
            _version_header(settings),
            _reverse_proxy(upstreams, count, settings),
        ],
        "terminal": True,
    }


def _version_header(settings: RenderSettings) -> JSON:
    return {"handler": "headers", "response": {"set": {VERSION_HEADER: [settings.version]}}}


def _reverse_proxy(upstreams: JSON, count: int, settings: RenderSettings) -> JSON:
    """A proxy to `upstreams` (static `upstreams` or `dynamic_upstreams`) of hosts with `count` upstreams each."""
    return {
        "handler": "reverse_proxy",
        **upstreams,
        "load_balancing": {
            # Round robin moves on to the next upstream on a retry; random may pick the failed one again.
            "selection_policy": {"policy": "round_robin"},
            # Each other upstream about once. A dial error is retried for any method: nothing was sent.
            "retries": count,
            "try_duration": settings.upstream_try_duration,
            # A failed upstream is marked down at once, so the next try needs no pause (Caddy's default is
            # 250 ms); when none is left the retries run out within milliseconds: a quick 502/503.
            "try_interval": "1ms",
            # After the request was sent, only methods that are safe to send twice are retried (this replaces
            # Caddy's GET-only default); a request body is never buffered, so none is replayed.
            "retry_match": [{"method": ["GET", "HEAD", "OPTIONS"]}],
        },
        # One failure (a refused or timed-out dial, no response head in time, a connection cut before the
        # response) takes that ip:port out for the fail duration. Statuses and latency are the application's
        # business: a 500 or a slow report is an answer. A host with one upstream has nowhere else to go: marking
        # it down would turn one transient failure into 503s for the whole fail duration.
        **(
            {"health_checks": {"passive": {"fail_duration": settings.upstream_fail_duration, "max_fails": 1}}}
            if count > 1
            else {}
        ),
        "stream_close_delay": settings.stream_close_delay,
        "transport": {
            "protocol": "http",
            "dial_timeout": settings.upstream_dial_timeout,
            "response_header_timeout": settings.upstream_response_timeout,
            "keep_alive": {"idle_timeout": settings.upstream_idle_timeout},
        },
    }


def _host_route(route: Route, settings: RenderSettings, hash_password: PasswordHasher) -> JSON:
    handlers: list[JSON] = []
    if route.basic_auth is not None:
        handlers.append(
            {
                "handler": "authentication",
                "providers": {
                    "http_basic": {
                        "accounts": [account(route.basic_auth.user, hash_password(route.basic_auth))],
                        # Without the cache Caddy runs bcrypt on every request (0 rps under load, docs/caddy.md).
                        "hash_cache": {},
                    }
                },
            }
        )
    handlers.append(_version_header(settings))
    upstreams = {"upstreams": [{"dial": dial} for dial in route.upstreams]}
    handlers.append(_reverse_proxy(upstreams, len(route.upstreams), settings))
    return {
        "@id": route_id(route.host),
        "match": [{"host": [route.host]}],
        "handle": handlers,
        "terminal": True,
    }


def _load_pem(routes: Sequence[Route]) -> list[JSON]:
    return [pem_entry(r.host, r.certificate_pem, r.private_key_pem) for r in routes]
