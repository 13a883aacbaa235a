"""Unit tests of `coretraffic.caddyjson.render`: golden files plus the facts the renderer must keep.

Golden cases live in `tests/testdata/render/<case>/`: `routes.json` (wire format), `settings.json` (RenderSettings),
optionally `base.json` (an adapted base config), and `expected.json`. To rewrite the expected outputs after an
intended change run `UPDATE_GOLDEN=1 pytest tests/unit/test_render.py` (those tests then skip) and review the diff;
without it any difference fails.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
from dataclasses import replace
from typing import Any

import pytest

from coretraffic.caddyjson.base import BASE_SENTINEL_HOST, BaseConfig, base_from_adapted
from coretraffic.caddyjson.layout import (
    CONFIG_ID_PREFIX,
    HTTP_SERVER,
    HTTPS_SERVER,
    NOT_FOUND_ID,
    REQUEST_ERRORS_LOG,
    VERSION_HEADER,
    certificate_owners,
    config_id,
    route_id,
)
from coretraffic.caddyjson.render import RenderSettings, render, serialise, with_admin_listen
from coretraffic.caddyjson.traffic import TrafficSettings
from coretraffic.core.validate import Route, validate_route_set
from coretraffic.errors import BaseConfigError
from tests.support import golden
from tests.support.golden import fake_hash

GOLDEN = golden.RENDER_CASES
CASES = ("plain", "multi", "base", "buckets", "traffic")
# Inside the golden certificates' validity (2020-2120), fixed so no warning depends on the day the tests run.
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

JSON = dict[str, Any]


def load(case: str, name: str) -> Any:
    return json.loads((GOLDEN / case / name).read_text())


def case_routes(case: str) -> tuple[Route, ...]:
    validation = validate_route_set(load(case, "routes.json"), NOW)
    assert validation.problems == (), validation.problems
    return validation.routes


def case_settings(case: str) -> RenderSettings:
    settings = load(case, "settings.json")
    if "traffic" in settings:
        settings["traffic"] = TrafficSettings(**settings["traffic"])
    return RenderSettings(**settings)


def case_base(case: str) -> BaseConfig:
    settings = case_settings(case)
    if not (GOLDEN / case / "base.json").exists():
        return BaseConfig()
    return base_from_adapted(load(case, "base.json"), settings.http_port, settings.https_port)


def render_case(case: str) -> JSON:
    return render(case_routes(case), case_settings(case), case_base(case), fake_hash)


def golden_text(config: JSON) -> str:
    return json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def servers(config: JSON) -> JSON:
    result: JSON = config["apps"]["http"]["servers"]
    return result


def host_routes(config: JSON) -> list[JSON]:
    return [r for r in servers(config)[HTTPS_SERVER]["routes"] if "match" in r]


def handler(route: JSON, name: str) -> JSON:
    (found,) = [h for h in route["handle"] if h["handler"] == name]
    result: JSON = found
    return result


# --- goldens --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    actual = golden_text(render_case(case))
    path = GOLDEN / case / "expected.json"
    golden.update_if_asked(path, actual)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    assert json.loads(actual) == json.loads(expected)
    assert actual == expected


@pytest.mark.parametrize("case", CASES)
def test_render_is_deterministic_and_ignores_input_order(case: str) -> None:
    routes = list(case_routes(case))
    settings, base = case_settings(case), case_base(case)
    first = serialise(render(routes, settings, base, fake_hash))
    assert serialise(render(routes, settings, base, fake_hash)) == first
    for seed in range(3):
        shuffled = routes[:]
        random.Random(seed).shuffle(shuffled)
        assert serialise(render(tuple(reversed(shuffled)), settings, base, fake_hash)) == first


def test_render_does_not_modify_the_base_config() -> None:
    base = case_base("base")
    before = copy.deepcopy(base)
    render(case_routes("base"), case_settings("base"), base, fake_hash)
    assert base == before


# --- key facts ------------------------------------------------------------------------------------------------


def test_render_names_no_admin_address_and_keeps_the_other_admin_options() -> None:
    config = render_case("base")
    assert config["admin"] == {"config": {"persist": False}}  # the base's own listen address is not carried
    assert "admin" not in render_case("plain")


def test_the_loader_sets_the_admin_address_and_the_marker_does_not_depend_on_it() -> None:
    config = render_case("base")
    loaded = with_admin_listen(config, "unix//run/one.sock")
    assert loaded["admin"] == {"listen": "unix//run/one.sock", "config": {"persist": False}}
    assert "listen" not in config["admin"]  # the rendered config is not changed: it can serve another Caddy
    assert config_id(with_admin_listen(config, "localhost:2019")) == config_id(loaded) == config_id(config)
    assert with_admin_listen(render_case("plain"), "localhost:2019")["admin"] == {"listen": "localhost:2019"}


@pytest.mark.parametrize("case", CASES)
def test_automatic_https_is_disabled_on_both_servers_and_tls_policies_present(case: str) -> None:
    config = render_case(case)
    for name in (HTTP_SERVER, HTTPS_SERVER):
        assert servers(config)[name]["automatic_https"] == {"disable": True}
    # Without a connection policy Caddy would serve plain HTTP on the HTTPS port once automatic HTTPS is off.
    assert servers(config)[HTTPS_SERVER]["tls_connection_policies"] == [{}]
    assert "tls_connection_policies" not in servers(config)[HTTP_SERVER]


def test_ports_and_listen_addresses() -> None:
    config = render_case("multi")
    assert config["apps"]["http"]["http_port"] == 7999
    assert config["apps"]["http"]["https_port"] == 8000
    assert servers(config)[HTTP_SERVER]["listen"] == ["0.0.0.0:7999"]
    assert servers(config)[HTTPS_SERVER]["listen"] == ["0.0.0.0:8000"]
    settings = RenderSettings(version="x", http_port=80, https_port=443)
    other = render(case_routes("plain"), settings, BaseConfig(), fake_hash)
    assert servers(other)[HTTP_SERVER]["listen"] == [":80"]
    assert servers(other)[HTTPS_SERVER]["listen"] == [":443"]


def test_protocols_without_and_with_http3() -> None:
    assert case_settings("plain").http3 is False
    assert servers(render_case("plain"))[HTTPS_SERVER]["protocols"] == ["h1", "h2"]
    assert case_settings("base").http3 is True
    assert servers(render_case("base"))[HTTPS_SERVER]["protocols"] == ["h1", "h2", "h3"]


@pytest.mark.parametrize("case", CASES)
def test_not_found_catch_all_is_last(case: str) -> None:
    routes = servers(render_case(case))[HTTPS_SERVER]["routes"]
    last = routes[-1]
    assert last["@id"] == NOT_FOUND_ID
    # Nothing but the Host port guard of per-host metrics (`traffic`), if any: it catches every host.
    assert all(set(matchers) == {"vars_regexp"} for matchers in last.get("match", []))
    assert last["handle"][0]["handler"] == "static_response"
    assert last["handle"][0]["status_code"] == 404
    assert all("match" in route for route in routes[:-1])
    matched = [host for route in routes[:-1] for host in route["match"][0]["host"]]
    assert sorted(matched) == sorted(r.host for r in case_routes(case))  # each host matched by exactly one route


def test_http_server_redirects_everything_to_https() -> None:
    (route,) = servers(render_case("plain"))[HTTP_SERVER]["routes"]
    assert "match" not in route
    assert route["handle"] == [
        {
            "handler": "static_response",
            "status_code": 301,
            "headers": {"Location": ["https://{http.request.host}{http.request.uri}"]},
        }
    ]


def test_each_host_route_has_its_id_matcher_version_header_and_upstreams() -> None:
    config = render_case("multi")
    routes = host_routes(config)
    # Exact hosts before wildcards, whatever their names sort as (`render._precedence`).
    assert [r["match"] for r in routes] == [[{"host": ["shop.example.test"]}], [{"host": ["*.wild.example.test"]}]]
    assert [r["@id"] for r in routes] == [route_id("shop.example.test"), route_id("*.wild.example.test")]
    for route in routes:
        assert route["terminal"] is True
        assert handler(route, "headers")["response"]["set"] == {VERSION_HEADER: ["1.2.3"]}
        proxy = handler(route, "reverse_proxy")
        assert proxy["transport"] == {
            "protocol": "http",
            "dial_timeout": "2s",
            "response_header_timeout": "10s",
            "keep_alive": {"idle_timeout": "5s"},
        }
        assert route["handle"][-1] is proxy
    shop, wild = routes
    assert handler(wild, "reverse_proxy")["upstreams"] == [{"dial": "backend.internal:80"}]
    assert handler(shop, "reverse_proxy")["upstreams"] == [
        {"dial": "10.0.0.2:443"},
        {"dial": "10.0.0.2:8443"},
        {"dial": "[2001:db8::10]:443"},
        {"dial": "[2001:db8::10]:8443"},
    ]


def test_basic_auth_comes_first_with_hash_and_hash_cache() -> None:
    shop, wild = host_routes(render_case("multi"))
    assert [h["handler"] for h in wild["handle"]] == ["headers", "reverse_proxy"]
    assert [h["handler"] for h in shop["handle"]] == ["authentication", "headers", "reverse_proxy"]
    basic = handler(shop, "authentication")["providers"]["http_basic"]
    assert basic["accounts"] == [{"username": "alice", "password": "$2b$04$fake-alice"}]
    assert basic["hash_cache"] == {}
    assert "wonderland" not in serialise(render_case("multi")).decode()


def test_all_ids_are_unique() -> None:
    def ids(node: Any) -> list[str]:
        if isinstance(node, list):
            return [i for item in node for i in ids(item)]
        if isinstance(node, dict):
            own = [node["@id"]] if "@id" in node else []
            return own + [i for value in node.values() for i in ids(value)]
        return []

    for case in CASES:
        found = ids(render_case(case))
        assert len(found) == len(set(found)) == len(case_routes(case)) + 3  # hosts, 404, marker, base parts


def test_certificates_are_loaded_after_the_base_ones_and_tagged_by_host() -> None:
    config = render_case("base")
    entries = config["apps"]["tls"]["certificates"]["load_pem"]
    assert [e["tags"] for e in entries] == [["operator"], ["app.example.test"]]
    (route,) = case_routes("base")
    assert entries[1]["certificate"] == route.certificate_pem
    assert entries[1]["key"] == route.private_key_pem
    assert certificate_owners(config, ["app.example.test"]) == [None, "app.example.test"]
    multi = render_case("multi")
    hosts = ["*.wild.example.test", "shop.example.test"]
    assert certificate_owners(multi, hosts) == hosts


def test_ocsp_stapling_is_off_unless_asked_for_and_a_base_that_sets_it_keeps_its_value() -> None:
    routes = case_routes("plain")
    tls = render(routes, RenderSettings(version="x"), BaseConfig(), fake_hash)["apps"]["tls"]
    assert tls["disable_ocsp_stapling"] is True
    stapling = RenderSettings(version="x", ocsp_stapling=True)
    assert render(routes, stapling, BaseConfig(), fake_hash)["apps"]["tls"]["disable_ocsp_stapling"] is False
    base = BaseConfig({"apps": {"tls": {"disable_ocsp_stapling": True}}})
    assert render(routes, stapling, base, fake_hash)["apps"]["tls"]["disable_ocsp_stapling"] is True


def test_certificate_cache_capacity_is_twice_the_certificates_and_never_below_caddys_default_or_the_base() -> None:
    one = case_routes("plain")[0]
    many = [replace(one, host=f"h{i}.example.test") for i in range(6000)]
    settings = RenderSettings(version="x")

    def capacity(routes: list[Route], base: BaseConfig) -> int:
        return int(render(routes, settings, base, fake_hash)["apps"]["tls"]["cache"]["capacity"])

    assert capacity([one], BaseConfig()) == 10_000
    assert capacity(many, BaseConfig()) == 12_000
    assert capacity(many, BaseConfig({"apps": {"tls": {"cache": {"capacity": 50_000}}}})) == 50_000
    assert capacity(many, BaseConfig({"apps": {"tls": {"cache": {"capacity": 100}}}})) == 12_000


def test_base_config_is_merged() -> None:
    config = render_case("base")
    http_app = config["apps"]["http"]
    assert http_app["grace_period"] == 5000000000
    assert set(http_app["servers"]) == {"srv1", HTTP_SERVER, HTTPS_SERVER}  # the sentinel's server is gone
    assert http_app["servers"]["srv1"]["listen"] == [":9000"]
    assert config["logging"]["logs"]["default"] == {"level": "WARN"}  # the operator's log, beside render's own
    assert set(config["logging"]["logs"]) == {"default", REQUEST_ERRORS_LOG}
    for name in (HTTP_SERVER, HTTPS_SERVER):
        assert http_app["servers"][name]["read_header_timeout"] == 10000000000
        assert http_app["servers"][name]["max_header_bytes"] == 16000
    assert BASE_SENTINEL_HOST not in serialise(config).decode()


def test_config_id_marks_the_config() -> None:
    config = render_case("multi")
    marker = config_id(config)
    assert marker is not None
    assert marker.startswith(CONFIG_ID_PREFIX) and len(marker) > len(CONFIG_ID_PREFIX) + 16
    assert marker == servers(config)[HTTP_SERVER]["routes"][0]["@id"]
    unmarked = copy.deepcopy(config)
    del servers(unmarked)[HTTP_SERVER]["routes"][0]["@id"]
    assert config_id(unmarked) is None


@pytest.mark.parametrize(
    "config",
    [{}, {"apps": {}}, {"apps": {"http": {"servers": {HTTP_SERVER: {"routes": []}}}}}, {"apps": []}],
)
def test_config_id_of_a_foreign_config_is_none(config: JSON) -> None:
    assert config_id(config) is None


def test_config_id_of_a_foreign_marker_is_none() -> None:
    config = {"apps": {"http": {"servers": {HTTP_SERVER: {"routes": [{"@id": "someone_else"}]}}}}}
    assert config_id(config) is None


def test_config_id_changes_when_anything_changes() -> None:
    routes, settings, base = case_routes("multi"), case_settings("multi"), case_base("multi")
    original = config_id(render(routes, settings, base, fake_hash))
    fewer = config_id(render(routes[:1], settings, base, fake_hash))
    newer = config_id(
        render(routes, RenderSettings(**{**load("multi", "settings.json"), "version": "9"}), base, fake_hash)
    )
    rehashed = config_id(render(routes, settings, base, lambda auth: "$2b$04$other"))
    empty = config_id(render((), settings, base, fake_hash))
    other_base = config_id(render(routes, settings, case_base("base"), fake_hash))
    assert config_id(render(routes, settings, base, fake_hash)) == original
    found = [original, fewer, newer, rehashed, empty, other_base]
    assert None not in found
    assert len(set(found)) == len(found)


def test_no_routes_still_renders_both_servers_and_the_404() -> None:
    config = render((), case_settings("plain"), BaseConfig(), fake_hash)
    assert servers(config)[HTTPS_SERVER]["routes"] == [
        {
            "@id": NOT_FOUND_ID,
            "handle": [{"handler": "static_response", "status_code": 404, "body": "no route for this host\n"}],
        }
    ]
    assert config["apps"]["tls"]["certificates"]["load_pem"] == []
    assert config_id(config) is not None


# --- base_from_adapted ----------------------------------------------------------------------------------------


def adapted(*extra_servers: tuple[str, JSON], sentinel: bool = True) -> JSON:
    server_map: JSON = {}
    if sentinel:
        server_map["srv0"] = {
            "listen": [":80"],
            "read_header_timeout": 10000000000,
            "routes": [{"match": [{"host": [BASE_SENTINEL_HOST]}], "terminal": True}],
        }
    server_map.update(dict(extra_servers))
    return {"apps": {"http": {"servers": server_map}}}


def operator_server(*listen: str) -> JSON:
    return {"listen": list(listen), "routes": [{"handle": [{"handler": "static_response", "body": "op"}]}]}


def test_base_from_adapted_takes_the_sentinel_apart() -> None:
    document = adapted(("srv1", operator_server(":9000")))
    before = copy.deepcopy(document)
    base = base_from_adapted(document, 7999, 8000)
    assert document == before  # the input is not modified
    assert base.server_defaults == {"read_header_timeout": 10000000000}
    assert base.config == {"apps": {"http": {"servers": {"srv1": operator_server(":9000")}}}}


def test_base_from_adapted_without_sentinel_has_no_defaults() -> None:
    base = base_from_adapted(adapted(("srv1", operator_server(":9000")), sentinel=False), 7999, 8000)
    assert base.server_defaults == {}
    assert list(base.config["apps"]["http"]["servers"]) == ["srv1"]
    assert base_from_adapted({}, 7999, 8000) == BaseConfig()


@pytest.mark.parametrize("name", [HTTP_SERVER, HTTPS_SERVER])
def test_base_defining_a_managed_server_is_rejected(name: str) -> None:
    with pytest.raises(BaseConfigError, match=f"'{name}'.*coretraffic manages"):
        base_from_adapted(adapted((name, operator_server(":9000"))), 7999, 8000)


@pytest.mark.parametrize(
    "address",
    [":8000", "0.0.0.0:7999", ":7990-8010", "tcp/[::]:8000", "127.0.0.1:7999-7999", "udp/:8000", "[::1]:7999"],
)
def test_base_listening_on_a_managed_port_is_rejected(address: str) -> None:
    with pytest.raises(BaseConfigError) as caught:
        base_from_adapted(adapted(("srv1", operator_server(":9000", address))), 7999, 8000)
    message = str(caught.value)
    assert "'srv1'" in message
    assert repr(address) in message
    assert "HTTP 7999" in message and "HTTPS 8000" in message


def test_managed_ports_follow_the_settings() -> None:
    base_from_adapted(adapted(("srv1", operator_server(":8000", ":7999"))), 80, 443)  # not managed here: fine
    with pytest.raises(BaseConfigError):
        base_from_adapted(adapted(("srv1", operator_server(":443"))), 80, 443)


@pytest.mark.parametrize(
    "address",
    [
        ":9000",
        ":8001-8010",
        ":7000-7998",
        "unix//run/caddy.sock",
        "unix//run/8000.sock",
        "unix//run/caddy:8000.sock|0660",
        "unix//run/caddy:8000",
    ],
)
def test_base_listening_elsewhere_or_on_unix_sockets_is_fine(address: str) -> None:
    base = base_from_adapted(adapted(("srv1", operator_server(address))), 7999, 8000)
    assert base.config["apps"]["http"]["servers"]["srv1"]["listen"] == [address]


def test_sentinel_sharing_a_server_with_an_operator_site_is_taken_apart() -> None:
    # What `caddy adapt` (2.11.7) gives for `servers { timeouts { read_header 10s } }`, `http://foo.example {
    # respond "x" }` and the appended sentinel site: both sites share one :80 server.
    operator_route = {
        "match": [{"host": ["foo.example"]}],
        "handle": [
            {"handler": "subroute", "routes": [{"handle": [{"body": "x", "handler": "static_response"}]}]},
        ],
        "terminal": True,
    }
    document = {
        "apps": {
            "http": {
                "servers": {
                    "srv0": {
                        "listen": [":80"],
                        "read_header_timeout": 10000000000,
                        "routes": [
                            {"match": [{"host": [BASE_SENTINEL_HOST]}], "terminal": True},
                            operator_route,
                        ],
                    }
                }
            }
        }
    }
    base = base_from_adapted(document, 7999, 8000)
    assert base.server_defaults == {"read_header_timeout": 10000000000}
    assert base.config["apps"]["http"]["servers"]["srv0"]["routes"] == [operator_route]


def test_passive_health_only_where_a_host_has_another_upstream_to_go_to() -> None:
    proxies = [
        handler
        for case in CASES
        for route in servers(render_case(case))[HTTPS_SERVER]["routes"]
        for handler in route.get("handle", [])
        if handler.get("handler") == "reverse_proxy"
    ]
    kinds = {(proxy["load_balancing"]["retries"] > 1, "health_checks" in proxy) for proxy in proxies}
    assert kinds == {(True, True), (False, False)}  # one upstream: never marked down, so one failure is not 503s


def plain_route(host: str, ports: tuple[int, ...]) -> Route:
    template = case_routes("plain")[0]
    return replace(template, host=host, upstreams=tuple(f"10.1.{i}.{len(host)}:{p}" for i, p in enumerate(ports)))


def bucket_sources(config: JSON) -> list[list[str]]:
    """Per bucket route, the ports of its proxy's `a` sources (a placeholder where each host maps its own)."""
    return [
        [source["port"] for source in handler["dynamic_upstreams"]["sources"]]
        for route in servers(config)[HTTPS_SERVER]["routes"]
        for handler in route.get("handle", [])
        if "dynamic_upstreams" in handler
    ]


def test_hosts_sharing_their_ports_share_buckets_whose_ports_are_constants() -> None:
    # One placeholder per upstream: each one read makes Caddy's map scan its entries.
    routes = [plain_route(f"h{i:03}.example.test", (8080, 9090)) for i in range(300)]
    routes += [plain_route(f"w{i:03}.example.test", (3000,)) for i in range(120)]
    config = render(routes, RenderSettings("1.2.3", bucket_size=100), BaseConfig(), fake_hash)
    assert sorted(bucket_sources(config)) == [["3000"]] * 2 + [["8080", "9090"]] * 3  # evenly split: 60 + 60


def test_hosts_each_on_ports_of_their_own_still_share_a_few_buckets() -> None:
    # Port lists shared by fewer than a quarter bucket of hosts would be a route each otherwise: the cliff.
    routes = [plain_route(f"h{i:03}.example.test", (10_000 + i,)) for i in range(300)]
    routes += [plain_route(f"m{i:03}.example.test", (80, 80 + i % 7)) for i in range(40)]
    config = render(routes, RenderSettings("1.2.3", bucket_size=100), BaseConfig(), fake_hash)
    placeholder = "{coretraffic_upstream_0_port}"
    # Half-size buckets: their maps are read for two placeholders per upstream.
    assert bucket_sources(config) == [[placeholder]] * 6 + [[placeholder, "{coretraffic_upstream_1_port}"]]


def test_every_proxy_keeps_its_upgraded_streams_open_for_the_stream_close_delay() -> None:
    """Flat and bucketed layouts alike: a WebSocket outlives the config it was opened under by the delay."""
    for case in CASES:
        settings = replace(case_settings(case), stream_close_delay="42m")
        config = render(case_routes(case), settings, case_base(case), fake_hash)
        proxies = [
            handler
            for route in servers(config)[HTTPS_SERVER]["routes"]
            for handler in route.get("handle", [])
            if handler.get("handler") == "reverse_proxy"
        ]
        assert proxies, case
        assert {proxy["stream_close_delay"] for proxy in proxies} == {"42m"}, case


def first_route_for(config: JSON, name: str) -> JSON:
    """The HTTPS route Caddy runs for Host `name`: the first whose host matcher takes it (a `*` label stands for
    one label, as in Caddy's `MatchHost`)."""

    def takes(pattern: str) -> bool:
        want, got = pattern.split("."), name.split(".")
        return len(want) == len(got) and all(w in ("*", g) for w, g in zip(want, got, strict=True))

    return next(
        r for r in servers(config)[HTTPS_SERVER]["routes"] if any(map(takes, r.get("match", [{}])[0].get("host", [])))
    )


@pytest.mark.parametrize("flat_max", [16, 2], ids=["flat", "bucketed"])
def test_an_exact_host_wins_over_a_wildcard_above_it_whatever_the_names_sort_as(flat_max: int) -> None:
    template = case_routes("multi")
    authed = next(r for r in template if r.basic_auth is not None)
    routes = [
        replace(plain_route("*.nc.test", (81,)), basic_auth=authed.basic_auth),  # sorts before every letter
        replace(plain_route("auth.nc.test", (82,)), basic_auth=authed.basic_auth),
        plain_route("ec.nc.test", (83,)),
        plain_route("plain.example.test", (84,)),
        plain_route("*.example.test", (85,)),
    ]
    config = render(routes, RenderSettings("1.2.3", flat_max=flat_max), BaseConfig(), fake_hash)
    for route in routes:
        if route.host.startswith("*."):
            assert first_route_for(config, "other" + route.host[1:]).get("@id") == route_id(route.host)
            continue
        chosen = first_route_for(config, route.host)
        own = chosen.get("@id") == route_id(route.host)
        in_bucket = any(m.get("@id") == route_id(route.host) for h in chosen["handle"] for m in h.get("mappings", []))
        assert own or in_bucket, (route.host, chosen.get("@id"))


def test_per_host_metrics_guard_every_https_route_on_the_hosts_port() -> None:
    """Each matcher set of every HTTPS route, the catch-all included, also requires no port, 443 or the HTTPS port
    (caddyjson/traffic.py; measured in tests/caddy/test_traffic_metrics.py); without per-host metrics, no guard."""
    for settings in (case_settings("traffic"), replace(case_settings("traffic"), https_port=8443)):
        config = render(case_routes("buckets"), settings, BaseConfig(), fake_hash)
        routes = servers(config)[HTTPS_SERVER]["routes"]
        pattern = f"^[^:]+(?::(?:443|{settings.https_port}))?$"
        for route in routes:
            assert route["match"] and all(
                m["vars_regexp"]["{http.request.hostport}"]["pattern"] == pattern for m in route["match"]
            )
        assert routes[-1]["match"] == [{"vars_regexp": routes[0]["match"][0]["vars_regexp"]}]  # the catch-all
    plain = render(case_routes("buckets"), case_settings("buckets"), BaseConfig(), fake_hash)
    assert "vars_regexp" not in json.dumps(plain)
