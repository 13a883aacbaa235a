"""Unit tests of `coretraffic.caddyjson.layout` and `readback`: what render writes is what the rest reads back.

A rendered set read back through `readback` gives the same hosts, upstreams, basic-auth accounts and certificates,
in the flat layout (one route per host) and in the bucketed one (plain hosts share routes and a `map`); Caddy's
load errors map to the hosts they point at; the base config's parts survive the trip through their `@id`.
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import (
    BASE_PARTS_PATH,
    HTTPS_SERVER,
    JSON,
    base_parts_id,
    base_parts_recorded,
    certificate_owners,
    config_id,
    culprits,
)
from coretraffic.caddyjson.readback import read_config
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.caddyjson.tree import set_in
from coretraffic.core.certificates import Certificate
from coretraffic.core.validate import BasicAuth, Route

SETTINGS = RenderSettings("1.2.3")
# Far fewer hosts per bucket than in production, so that the bucketed set spreads over several buckets (and a port
# list needs only two hosts to get buckets of its own).
BUCKETED = dataclasses.replace(SETTINGS, bucket_size=8)
NO_CERTIFICATE = Certificate("", (), datetime.datetime.min, datetime.datetime.max, "")  # render never reads it
PEM_ERROR = "loading app modules: module name 'tls': provision tls: loading certificates: PEM pair {}: bad data"
ROUTE_ERROR = (
    "loading app modules: module name 'http': provision http: server {}: setting up route handlers: "
    "route {}: loading handler modules: position 0: bad hash"
)


def hash_password(auth: BasicAuth) -> str:
    return f"$2b$04$hash-of-{auth.user}-{auth.password}"


def route(host: str, upstreams: int = 1, user: str | None = None, first_port: int = 800) -> Route:
    return Route(
        host=host,
        upstreams=tuple(f"10.0.{len(host)}.{i}:{first_port + i}" for i in range(upstreams)),
        certificate_pem=f"chain of {host}",
        private_key_pem=f"key of {host}",
        certificate=NO_CERTIFICATE,
        basic_auth=BasicAuth(user, f"password of {host}", host.encode()) if user else None,
    )


def mixed_set(plain: int) -> list[Route]:
    """`plain` hosts with one to three upstreams, a quarter of them on ports no other host uses, plus hosts with
    basic auth and a wildcard host."""
    return [
        *(
            route(f"p{i:02}.example.test", 1 + i % 3, first_port=900 + 10 * i if i % 4 == 0 else 800)
            for i in range(plain)
        ),
        route("auth.example.test", upstreams=2, user="alice"),
        route("solo-auth.example.test", user="bob"),
        route("*.wild.example.test", upstreams=3),
    ]


@pytest.mark.parametrize(
    ("routes", "settings"), [(mixed_set(5), SETTINGS), (mixed_set(40), BUCKETED)], ids=["flat", "bucketed"]
)
def test_a_rendered_set_reads_back_as_it_was_rendered(routes: list[Route], settings: RenderSettings) -> None:
    config = render(routes, settings, BaseConfig(), hash_password)
    view = read_config(config)

    assert sorted(view.hosts) == sorted(r.host for r in routes)
    for r in routes:
        state = view.hosts[r.host]
        assert state.upstreams == r.upstreams
        assert state.account == ((r.basic_auth.user, hash_password(r.basic_auth)) if r.basic_auth else None)
        assert state.version == settings.version
        assert state.pem == (r.certificate_pem, r.private_key_pem)
    # What is left is render's own: no host's route or certificate, nothing unmanaged.
    assert view.unmanaged == {}
    assert view.residue["apps"]["tls"]["certificates"]["load_pem"] == []
    assert [r.get("@id") for r in view.residue["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]] == [
        "coretraffic_not_found"
    ]


def test_the_bucketed_set_does_share_routes() -> None:
    """Guards the round trip above: its bucketed case must really put plain hosts into map entries."""
    config = render(mixed_set(40), BUCKETED, BaseConfig(), hash_password)
    view = read_config(config)
    in_a_map = {host for host, state in view.hosts.items() if "outputs" in state.node}
    assert in_a_map == {f"p{i:02}.example.test" for i in range(40)}
    assert len({state.path[:6] for host, state in view.hosts.items() if host in in_a_map}) > 3  # several buckets
    sources = [
        source
        for r in config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
        for h in r["handle"]
        if "dynamic_upstreams" in h
        for source in h["dynamic_upstreams"]["sources"]
    ]
    # Both bucket forms: ports shared by the bucket's hosts as constants, and ports mapped per host.
    assert {source["port"].startswith("{") for source in sources} == {True, False}


def test_hosts_whose_upstreams_are_all_ip_addresses_share_buckets_and_dns_names_keep_their_own_route() -> None:
    dials = {  # written as validation writes them
        "v4.example.test": ("10.0.0.1:80", "10.0.0.2:80"),
        "v6.example.test": ("[2001:db8::1]:80",),
        "zone.example.test": ("[fe80::1%eth0]:80",),
        "name.example.test": ("backend.svc.test:80",),
        "digit-label.example.test": ("db1.internal:80",),
        "mixed.example.test": ("10.0.0.3:80", "backend.svc.test:80"),
    }
    routes = [dataclasses.replace(route(host), upstreams=upstreams) for host, upstreams in dials.items()]
    view = read_config(render([*mixed_set(20), *routes], BUCKETED, BaseConfig(), hash_password))
    in_a_map = {host for host in dials if "outputs" in view.hosts[host].node}
    assert in_a_map == {"v4.example.test", "v6.example.test", "zone.example.test"}


def with_base_certificate(config: JSON) -> JSON:
    certificates = config["apps"]["tls"]["certificates"]
    base_entry = {"certificate": "the base's", "key": "its key", "tags": ["operator-tag"]}  # tagged, but no host's
    certificates["load_pem"] = [base_entry, *certificates["load_pem"]]
    return config


def test_pem_pair_n_is_the_host_of_load_pem_entry_n() -> None:
    routes = mixed_set(5)
    hosts = sorted(r.host for r in routes)
    config = with_base_certificate(render(routes, SETTINGS, BaseConfig(), hash_password))
    assert certificate_owners(config, hosts) == [None, *hosts]
    assert culprits(PEM_ERROR.format(3), config, hosts) == [(hosts[2], "publicKey")]
    assert culprits(PEM_ERROR.format(0), config, hosts) == []  # the base's own certificate: nobody's fault
    assert culprits(PEM_ERROR.format(len(hosts) + 1), config, hosts) == []  # no such entry


def test_https_route_n_is_the_host_it_serves_alone() -> None:
    routes = mixed_set(5)
    hosts = sorted(r.host for r in routes)
    in_order = sorted(hosts, key=lambda host: (host.startswith("*."), host))  # exact hosts before wildcards
    config = render(routes, SETTINGS, BaseConfig(), hash_password)
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, 4), config, hosts) == [(in_order[4], "config")]
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, len(hosts)), config, hosts) == []  # the 404 route
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, len(hosts) + 1), config, hosts) == []  # no such route
    assert culprits(ROUTE_ERROR.format("srv0", 4), config, hosts) == []  # a route of another server


def test_a_bucket_route_is_nobodys_fault_but_a_host_route_after_the_buckets_is() -> None:
    routes = mixed_set(40)
    hosts = [r.host for r in routes]
    config = render(routes, BUCKETED, BaseConfig(), hash_password)
    https_routes = config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    first_own = next(i for i, r in enumerate(https_routes) if "@id" in r)  # buckets carry no `@id` of their own
    assert first_own > 1
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, 0), config, hosts) == []
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, first_own - 1), config, hosts) == []
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, first_own), config, hosts) == [("auth.example.test", "config")]
    last_own = len(https_routes) - 2  # before the 404: the wildcard, after every exact host
    assert culprits(ROUTE_ERROR.format(HTTPS_SERVER, last_own), config, hosts) == [("*.wild.example.test", "config")]


# Names a Caddyfile may give: spaces, the record's own separators, '%' and a '"' (which no `@id` may hold).
ODD_NAMES = ["srv0", "with space", "colon:name", "per%cent", 'quo"te', "ünï"]


def test_the_base_parts_record_round_trips_through_its_id() -> None:
    record = base_parts_id(["http", "tls", "pki", *ODD_NAMES], ODD_NAMES)
    assert '"' not in record
    assert len(record.split()) == 1 + 1 + 2 * len(ODD_NAMES)  # the prefix, then one token a part
    config: JSON = {"apps": {"http": {"servers": {"coretraffic_http": {}}}}}
    set_in(config, BASE_PARTS_PATH, record)
    expected = {"app pki", *(f"app {n}" for n in ODD_NAMES), *(f"server {n}" for n in ODD_NAMES)}
    assert base_parts_recorded(config) == expected  # http and tls are rendered whole: never the base's


def test_render_records_the_base_parts_where_they_are_read_back() -> None:
    base = BaseConfig({"apps": {"pki": {}, "http": {"servers": {name: {"listen": [":9"]} for name in ODD_NAMES}}}})
    config = render(mixed_set(2), SETTINGS, base, hash_password)
    assert base_parts_recorded(config) == {"app pki", *(f"server {name}" for name in ODD_NAMES)}
    assert config_id(config) is not None
    assert base_parts_recorded({"apps": {"http": {"servers": {"coretraffic_http": {"@id": "someone_else"}}}}}) == set()
