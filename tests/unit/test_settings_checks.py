"""Settings that cannot work stop `coretraffic run` at start: exit 2, one line naming the flag and the variable.

In-process through `cli.main`: a bad setting is found before logging, Caddy or any source is started, so the
command returns at once (the test would hang, and time out, if `run` started instead).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from coretraffic import cli
from coretraffic.app.wiring import go_duration, renderer_settings
from coretraffic.caddyjson.render import RenderSettings
from coretraffic.settings import AdminAddress, Settings


@pytest.fixture(autouse=True)
def no_coretraffic_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith("CORETRAFFIC_")]:
        monkeypatch.delenv(name)
    yield


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main(["run", *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("coretraffic: invalid setting ")
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--caddy-admin", "unix:///run/caddy/admin.sock", ["is a URL", "unix//run/caddy/admin.sock"]),
        ("--caddy-admin", "/run/caddy/admin.sock", ["is a path", "unix//run/caddy/admin.sock"]),
        ("--caddy-admin", "./admin.sock", ["relative path"]),
        ("--caddy-admin", "unix/admin.sock", ["unix//absolute/path"]),
        (
            "--caddy-admin",
            "ftp://127.0.0.1:2019",
            ["expected unix//path, host:port, http://host:port or https://host:port"],
        ),
        ("--caddy-admin", "https://caddy-0.edge.example", ["expected host:port"]),
        ("--caddy-admin", "http://127.0.0.1", ["expected host:port"]),
        ("--caddy-admin", "caddy", ["expected host:port"]),
        ("--caddy-admin", "http://10.0.0.7:2019", ["10.0.0.7 is not a loopback address"]),
        ("--coreflow-url", "ftp://coreflow", ["must be http(s)://host[:port]", "'ftp://coreflow'"]),
        ("--coreflow-url", "coreflow:3000", ["must be http(s)://host[:port]"]),
        ("--coreflow-url", "http://coreflow:3000/ns", ["must not have a path"]),
        ("--coreflow-url", "http://coreflow:99999", ["Port out of range"]),
    ],
)
def test_an_address_that_cannot_work_is_refused(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, words: list[str]
) -> None:
    line = one_line_error(capsys, flag, value)
    assert f"{flag} / CORETRAFFIC_{flag[2:].replace('-', '_').upper()}" in line
    for word in words:
        assert word in line


def test_the_variable_is_checked_as_the_flag_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORETRAFFIC_CADDY_ADMIN", "unix:///x")
    assert "--caddy-admin / CORETRAFFIC_CADDY_ADMIN" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("unix//run/caddy/admin.sock", "unix//run/caddy/admin.sock"),
        ("unix//run/caddy/admin.sock|0660", "unix//run/caddy/admin.sock"),
        ("http://127.0.0.1:2019/", "127.0.0.1:2019"),
        ("localhost:2019", "localhost:2019"),
        ("[::1]:2019", "[::1]:2019"),
    ],
)
def test_admin_addresses_that_work_are_taken_in_caddys_notation(given: str, expected: str) -> None:
    assert [address.listen for address in Settings.model_validate({"caddy_admin": given}).caddy_admin] == [expected]


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ([], "--admin-client-cert, --admin-client-key, --admin-ca"),
        (["--admin-client-cert", "/c.pem", "--admin-client-key", "/k.pem"], "--admin-ca"),
    ],
)
def test_an_https_admin_address_without_its_tls_material_is_refused(
    capsys: pytest.CaptureFixture[str], given: list[str], missing: str
) -> None:
    line = one_line_error(capsys, "--caddy-admin", "https://caddy-0.edge.example:2021", *given)
    assert f"needs {missing} (mutual TLS)" in line


def test_an_https_discovery_name_without_its_tls_material_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "--caddy-admin-dns", "https://caddy-admin:2021", "--admin-ca", "/ca.pem")
    assert "--caddy-admin-dns https://caddy-admin:2021 needs --admin-client-cert, --admin-client-key (mutual" in line


def test_plain_http_addresses_and_names_need_no_tls_material() -> None:
    settings = Settings.model_validate({"caddy_admin": "unix//run/a.sock", "caddy_admin_dns": "caddy-admin:2019"})
    assert not settings.admin_over_tls


def test_an_https_admin_address_is_taken_with_its_tls_material() -> None:
    settings = Settings.model_validate(
        {
            "caddy_admin": "https://caddy-0.edge.example:2021/",
            "admin_client_cert": "/c.pem",
            "admin_client_key": "/k.pem",
            "admin_ca": "/ca.pem",
        }
    )
    assert settings.caddy_admin == (AdminAddress("https", "caddy-0.edge.example:2021"),)
    assert settings.remote_admin_listen == "unix//shared/admin.sock"
    assert settings.admin_over_tls


def test_the_remote_caddys_own_admin_address_is_local(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "--remote-admin-listen", "https://caddy-0.edge.example:2021")
    assert "--remote-admin-listen / CORETRAFFIC_REMOTE_ADMIN_LISTEN" in line and "not https" in line


def test_the_same_port_for_http_and_https_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "--http-port", "8443", "--https-port", "8443")
    assert "--https-port / CORETRAFFIC_HTTPS_PORT" in line and "--http-port" in line and "8443" in line


@pytest.mark.parametrize("port_flag", ["--http-port", "--https-port"])
def test_the_status_server_on_a_data_port_is_refused(capsys: pytest.CaptureFixture[str], port_flag: str) -> None:
    line = one_line_error(capsys, port_flag, "9555", "--status-addr", "127.0.0.1:9555")
    assert "--status-addr / CORETRAFFIC_STATUS_ADDR" in line and port_flag in line


def test_the_status_server_may_share_a_port_number_on_another_address() -> None:
    settings = Settings.model_validate(
        {"listen_host": "127.0.0.2", "https_port": 9555, "status_addr": "127.0.0.1:9555"}
    )
    assert settings.status_addr == "127.0.0.1:9555"


def test_a_zero_upstream_timeout_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "--upstream-response-timeout", "0")
    assert "--upstream-response-timeout / CORETRAFFIC_UPSTREAM_RESPONSE_TIMEOUT" in line


def test_upstream_durations_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORETRAFFIC_UPSTREAM_TRY_DURATION", "3.5")
    assert Settings.model_validate({}).upstream_try_duration == 3.5


@pytest.mark.parametrize(
    ("seconds", "expected"), [(3600.0, "3600s"), (0.5, "0.5s"), (0.0, "0s"), (1_000_000.0, "1000000s")]
)
def test_durations_reach_caddy_as_go_duration_strings(seconds: float, expected: str) -> None:
    assert go_duration(seconds) == expected


def test_the_driver_renders_the_durations_render_defaults_to() -> None:
    # Tests render with RenderSettings' defaults, `run` and `diff` with the settings': written differently
    # ("5m" against "300s"), every host of a running set would read as changed in `diff`.
    rendered = renderer_settings(Settings.model_validate({}))
    defaults = RenderSettings(rendered.version)
    durations = [f.name for f in dataclasses.fields(RenderSettings) if f.name.startswith(("upstream_", "stream_"))]
    assert len(durations) == 6
    assert {name: getattr(rendered, name) for name in durations} == {
        name: getattr(defaults, name) for name in durations
    }


@pytest.mark.parametrize("port_flag", ["--http-port", "--https-port"])
def test_caddys_metrics_listener_on_a_data_port_is_refused(capsys: pytest.CaptureFixture[str], port_flag: str) -> None:
    line = one_line_error(capsys, port_flag, "9555", "--caddy-metrics-listen", "0.0.0.0:9555")
    assert "--caddy-metrics-listen / CORETRAFFIC_CADDY_METRICS_LISTEN" in line and port_flag in line


def test_the_status_server_on_caddys_metrics_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "--caddy-metrics-listen", "127.0.0.1:9555", "--status-addr", "127.0.0.1:9555")
    assert "--status-addr / CORETRAFFIC_STATUS_ADDR" in line and "--caddy-metrics-listen" in line


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--traffic-metrics", "per-host"), ("--access-log", "some"), ("--access-log-sample", "0")],
)
def test_a_traffic_setting_that_cannot_work_is_refused(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    assert f"{flag} / CORETRAFFIC_{flag[2:].upper().replace('-', '_')}" in one_line_error(capsys, flag, value)


def test_traffic_settings_reach_the_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults (per-host metrics on loopback, no access log), then each setting from its variable."""
    defaults = renderer_settings(Settings.model_validate({})).traffic
    assert (defaults.metrics, defaults.metrics_listen, defaults.access_log) == ("per_host", "127.0.0.1:9181", "off")
    monkeypatch.setenv("CORETRAFFIC_TRAFFIC_METRICS", "server")
    monkeypatch.setenv("CORETRAFFIC_CADDY_METRICS_LISTEN", "")
    monkeypatch.setenv("CORETRAFFIC_ACCESS_LOG", "errors")
    monkeypatch.setenv("CORETRAFFIC_ACCESS_LOG_SAMPLE", "20")
    monkeypatch.setenv("CORETRAFFIC_ACCESS_LOG_SKIP_HOSTS", "Health.Example.TEST, ping.example.test")
    traffic = renderer_settings(Settings.model_validate({})).traffic
    assert traffic.metrics == "server" and traffic.metrics_listen == "" and traffic.access_log == "errors"
    assert traffic.access_log_sample == 20
    assert traffic.access_log_skip_hosts == ("health.example.test", "ping.example.test")
