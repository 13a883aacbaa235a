"""What is decided once for a fleet of Caddies, without any Caddy: the one render every target shares, the
`updateRouting` reply built from each Caddy's answer, and the admin and DNS addresses a fleet is given."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Sequence

import pytest

from coretraffic import cli
from coretraffic.caddyjson.layout import JSON
from coretraffic.core.certificates import Certificate
from coretraffic.core.validate import Problem, Route
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.reconcile.render_once import RenderOnce
from coretraffic.settings import AdminAddress, DnsTarget, Settings, parse_dns_target
from coretraffic.sources.coreflow.handler import fleet_reply


def _result(outcome: str = "applied", rejected: tuple[Problem, ...] = (), answer: str = "HTTP 200") -> ApplyResult:
    return ApplyResult(outcome, ("a.example.test",), rejected, (), 0.01, answer)  # type: ignore[arg-type]


BAD = Problem("b.example.test", "publicKey", "not a certificate")


def _route(host: str) -> Route:
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    pem = f"certificate of {host}"  # never parsed: nothing here looks at certificates
    return Route(host, ("10.0.0.1:8080",), pem, f"key of {host}", Certificate("00" * 32, (host,), when, when, pem))


def test_every_target_gets_the_same_render_of_the_same_routes_and_fewer_routes_render_again() -> None:
    calls: list[int] = []

    def render(routes: Sequence[Route]) -> JSON:
        calls.append(len(routes))
        return {"routes": len(routes)}

    once = RenderOnce(render)
    routes = (_route("a.example.test"), _route("b.example.test"))
    configs: list[JSON] = []
    # As three reconcilers do: each takes a list of the set's routes and renders it in a worker thread.
    threads = [threading.Thread(target=lambda: configs.append(once(list(routes)))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [2] and len(configs) == 3 and all(config is configs[0] for config in configs)
    assert once(list(routes[1:])) == {"routes": 1}  # one target isolated a rejected host: its own render
    assert once([_route("a.example.test"), routes[1]]) == {"routes": 2}  # equal, but from another set
    assert calls == [2, 1, 2]


def test_one_caddy_replies_as_before() -> None:
    assert fleet_reply({"c": _result()}, {}, 10) == {"status": "ok", "errorText": ""}
    reply = fleet_reply({"c": None}, {"c": "connection refused"}, 10)
    assert reply["errorText"].startswith("route set accepted but not applied yet: Caddy did not answer within 10 s")
    assert "(connection refused)" in reply["errorText"]


def test_the_fleet_reply_is_ok_only_when_every_caddy_serves_every_host() -> None:
    assert fleet_reply({"a": _result(), "b": _result(), "c": _result("unchanged")}, {}, 10)["status"] == "ok"
    reply = fleet_reply({"a": _result(), "b": None, "c": _result()}, {"b": "timed out"}, 10)
    assert reply["status"] == "error"
    assert reply["errorText"].startswith("1 of 3 Caddies do not serve the whole set; [b] route set accepted but")
    assert "(timed out)" in reply["errorText"] and "[a" not in reply["errorText"]


def test_a_host_rejected_everywhere_is_listed_once_for_all_caddies() -> None:
    results = {name: _result(rejected=(BAD,)) for name in ("a", "b")}
    results["c"] = _result("failed", answer="loading config: boom")
    text = fleet_reply(results, {}, 10)["errorText"]
    assert text.startswith("3 of 3 Caddies do not serve the whole set; [a, b] 1 host served, 1 rejected; b.example")
    assert text.count("b.example.test: publicKey") == 1
    assert "[c] Caddy rejected the route set: loading config: boom" in text


def test_no_caddy_yet_is_an_error_that_says_so() -> None:
    assert "none found yet" in fleet_reply({}, {}, 10)["errorText"]


def test_caddy_admin_is_repeatable_and_comma_separated_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORETRAFFIC_CADDY_ADMIN", "unix//run/a.sock, http://127.0.0.1:2019")
    settings = Settings.model_validate({})
    assert settings.caddy_admin == (AdminAddress("unix", "/run/a.sock"), AdminAddress("http", "127.0.0.1:2019"))
    assert not settings.spawns_caddy
    assert [a.name for a in settings.caddy_admin] == ["unix//run/a.sock", "http://127.0.0.1:2019"]
    monkeypatch.delenv("CORETRAFFIC_CADDY_ADMIN")
    assert Settings.model_validate({}).spawns_caddy
    assert not Settings.model_validate({"caddy_admin_dns": "caddy.test"}).spawns_caddy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("caddy.test", DnsTarget("http", "caddy.test", 2019)),
        ("tasks.caddy:2021", DnsTarget("http", "tasks.caddy", 2021)),
        ("https://caddy.default.svc:2021", DnsTarget("https", "caddy.default.svc", 2021)),
    ],
)
def test_dns_targets(text: str, expected: DnsTarget) -> None:
    assert parse_dns_target(text) == expected


def test_a_discovered_instance_over_plain_http_must_be_on_loopback() -> None:
    target = parse_dns_target("caddy.test:2019")
    assert target.address_of("127.0.0.3") == AdminAddress("http", "127.0.0.3:2019")
    assert target.address_of("::1") == AdminAddress("http", "[::1]:2019")
    with pytest.raises(ValueError, match=r"10\.1\.2\.3 is not a loopback address"):
        target.address_of("10.1.2.3")


@pytest.mark.parametrize("value", ["ftp://caddy.test", "caddy.test:99999", "https://:2021"])
def test_a_dns_target_that_cannot_work_is_refused(capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert cli.main(["run", "--caddy-admin-dns", value]) == 2
    err = capsys.readouterr().err
    assert "--caddy-admin-dns / CORETRAFFIC_CADDY_ADMIN_DNS" in err and "NAME[:PORT]" in err


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--caddy-admin", "https://10.0.0.5:2021", "https://10.0.0.5:2021"),
        ("--caddy-admin-dns", "https://caddy.default.svc:2021", "https://caddy.default.svc:2021"),
    ],
)
def test_a_remote_admin_address_is_refused_at_start_without_its_mutual_tls_material(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, named: str
) -> None:
    assert cli.main(["run", "--routes", "/dev/null", flag, value]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{flag} {named} needs --admin-client-cert, --admin-client-key, --admin-ca (mutual TLS)" in line
