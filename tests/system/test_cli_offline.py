"""The `coretraffic` command without Caddy running: `--version`, `check`, `render` and setting errors.

Every test runs `python -m coretraffic` in a subprocess, with no inherited `CORETRAFFIC_*` variable and a state
directory under the test's tmp_path.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from coretraffic import __version__
from coretraffic.core.validate import checked_pairs, validate_route_set
from coretraffic.sources.checked_pairs_file import FILE_NAME, CheckedPairsFile
from coretraffic.testing.pki import DemoCA, IssuedCertificate

CANARY = "CANARY-SECRET-9f8e"
TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA("coretraffic cli test CA")


@pytest.fixture
def env(tmp_path: Path, ca: DemoCA) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CORETRAFFIC_", "SSL_CERT_"))}
    clean["CORETRAFFIC_STATE_DIR"] = str(tmp_path / "state")
    # The system trusts the test CA, as a cluster's machines trust its private CA: its leaves reach a root.
    (tmp_path / "roots.pem").write_text(ca.certificate_pem)
    clean["SSL_CERT_FILE"] = str(tmp_path / "roots.pem")
    clean["CORETRAFFIC_BCRYPT_COST"] = "4"  # fast hashes; still real bcrypt
    return clean


def coretraffic(env: dict[str, str], *args: str) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "coretraffic", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def wire(host: str, issued: IssuedCertificate, **overrides: Any) -> dict[str, Any]:
    return {
        "hostName": host,
        "destinationIps": ["127.0.0.1"],
        "destinationPorts": [3000],
        "privateKey": issued.private_key_pem,
        "publicKey": issued.certificate_pem,
        **overrides,
    }


def routes_file(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(document))
    return path


def assert_one_line_error(run: Run, *words: str) -> None:
    assert run.returncode == 2, run
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("coretraffic: ")
    for word in words:
        assert word in lines[0]


def test_version(env: dict[str, str]) -> None:
    run = coretraffic(env, "--version")
    assert run == Run(0, f"coretraffic {__version__}\n", "")


def test_check_clean_routes_exits_0(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    path = routes_file(tmp_path, [wire("app.example.test", ca.issue(["app.example.test"]))])
    run = coretraffic(env, "check", "--routes", str(path))
    assert run == Run(0, "1 host valid, 0 errors, 0 warnings, 0 notices\n", "")


def test_check_prints_problems_and_exits_1(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    issued = ca.issue(["app.example.test"])
    document = {
        "reverseConfigs": [
            wire("app.example.test", issued),
            wire("bad.example.test", ca.issue(["bad.example.test"]), destinationPorts=[0]),
            wire("key.example.test", issued, privateKey=f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n"),
            wire("auth.example.test", issued, authentication={"type": "Basic", "user": "a:b", "pass": CANARY}),
        ]
    }
    run = coretraffic(env, "check", "--routes", str(routes_file(tmp_path, document)))
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        "error: bad.example.test: destinationPorts[0]: 0 is not a port (1-65535)",
        "error: key.example.test: privateKey: is not a PEM private key",
        "error: auth.example.test: publicKey: certificate does not cover auth.example.test (it names app.example.test)",
        "error: auth.example.test: authentication.user: must be printable, without ':', '{' or '}'",
        "1 host valid, 4 errors, 0 warnings, 0 notices",
    ]
    assert CANARY not in run.stdout + run.stderr


def test_check_exits_0_on_warnings_only_and_1_with_strict(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue(
        ["app.example.test"], not_before=now - datetime.timedelta(days=9), not_after=now - datetime.timedelta(days=2)
    )
    path = str(routes_file(tmp_path, [wire("app.example.test", expired)]))
    run = coretraffic(env, "check", "--routes", path)
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("warning: app.example.test: publicKey: certificate expired at ")
    assert lines[1] == "1 host valid, 0 errors, 1 warning, 0 notices"
    strict = coretraffic(env, "check", "--strict", "--routes", path)
    assert (strict.returncode, strict.stdout) == (1, run.stdout)


def test_check_reports_a_duplicate_host_as_ignored_not_rejected(
    env: dict[str, str], tmp_path: Path, ca: DemoCA
) -> None:
    host = "ec.nc.test"
    path = str(routes_file(tmp_path, [wire(host, ca.issue([host])), wire(host.upper(), ca.issue([host]))]))
    run = coretraffic(env, "check", "--routes", path)
    assert run == Run(
        0,
        f"warning: {host}: hostName: config #2 ignored (duplicate of #1, which is served)\n"
        "1 host valid, 0 errors, 1 warning, 0 notices\n",
        "",
    )
    assert coretraffic(env, "check", "--strict", "--routes", path).returncode == 1


def test_check_warns_about_a_chain_that_does_not_reach_a_trusted_root(
    env: dict[str, str], tmp_path: Path, ca: DemoCA
) -> None:
    """The same leaf as in the clean case, on a system that does not trust its CA."""
    path = str(routes_file(tmp_path, [wire("app.example.test", ca.issue(["app.example.test"]))]))
    (tmp_path / "roots.pem").write_text(DemoCA("another root").certificate_pem)
    run = coretraffic(env, "check", "--routes", path)
    assert run.returncode == 0
    assert run.stdout.splitlines()[0].startswith(
        "warning: app.example.test: publicKey: chain does not reach a root: its last certificate is issued by "
        "CN=coretraffic cli test CA, which is neither in the chain nor among the system's trusted roots: "
        "intermediate missing?"
    )
    assert coretraffic(env, "check", "--strict", "--routes", path).returncode == 1


def test_check_shows_every_problem_of_a_host(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    issued = ca.issue(["app.example.test"])
    broken = wire(
        "Bad_Name.example.test",
        issued,
        destinationIps=["10.0.0.1", "not an address"],
        destinationPorts=[8080, 70000],
        authentication={"type": "Basic", "user": "", "pass": ""},
    )
    run = coretraffic(env, "check", "--routes", str(routes_file(tmp_path, [broken])))
    assert run.returncode == 1
    fields = [line.split(": ")[2] for line in run.stdout.splitlines()[:-1]]
    assert fields == [
        "hostName",
        "destinationIps[1]",
        "destinationPorts[1]",
        "authentication.user",
        "authentication.pass",
    ]
    assert run.stdout.splitlines()[-1] == "0 hosts valid, 5 errors, 0 warnings, 0 notices"


def test_check_takes_what_the_driver_checked_from_the_state_directory(
    env: dict[str, str], tmp_path: Path, ca: DemoCA
) -> None:
    """The record of checked certificates is trusted as the driver wrote it: a forged one shows in the result."""
    host = "app.example.test"
    path = routes_file(tmp_path, [wire(host, ca.issue([host]))])
    assert coretraffic(env, "check", "--routes", str(path)) == Run(
        0, "1 host valid, 0 errors, 0 warnings, 0 notices\n", ""
    )
    validate_route_set(json.loads(path.read_text()), datetime.datetime.now(datetime.UTC))
    forged = [(pair, dataclasses.replace(found, names=("forged.example.test",))) for pair, found in checked_pairs()]
    CheckedPairsFile(Path(env["CORETRAFFIC_STATE_DIR"]) / FILE_NAME).save(forged)
    run = coretraffic(env, "check", "--routes", str(path))
    assert run.stdout.splitlines()[0] == (
        f"error: {host}: publicKey: certificate does not cover {host} (it names forged.example.test)"
    )


def test_check_reads_the_routes_file_from_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    env["CORETRAFFIC_ROUTES"] = str(routes_file(tmp_path, []))
    assert coretraffic(env, "check") == Run(0, "0 hosts valid, 0 errors, 0 warnings, 0 notices\n", "")


def test_check_without_routes_is_a_usage_error(env: dict[str, str]) -> None:
    assert_one_line_error(coretraffic(env, "check"), "--routes FILE", "CORETRAFFIC_ROUTES")


def test_check_missing_file_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    assert_one_line_error(coretraffic(env, "check", "--routes", str(path)), f"cannot read routes file {path}")


def test_check_bad_json_is_a_usage_error_without_the_text(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(f'[{{"privateKey": "{CANARY}"}} oops]')
    run = coretraffic(env, "check", "--routes", str(path))
    assert_one_line_error(run, "not valid JSON (line 1, column")
    assert CANARY not in run.stderr


@pytest.mark.parametrize("document", [{"routes": []}, "text", {"reverseConfigs": 5}])
def test_check_unusable_document_is_a_usage_error(env: dict[str, str], tmp_path: Path, document: Any) -> None:
    assert_one_line_error(coretraffic(env, "check", "--routes", str(routes_file(tmp_path, document))), "reverseConfigs")


def _render_document(ca: DemoCA) -> list[dict[str, Any]]:
    app = ca.issue(["app.example.test"])
    shop = ca.issue(["shop.example.test"])
    # PEM parsers skip text before the BEGIN line: the canary rides along in a key that is still valid.
    return [
        wire("app.example.test", app, privateKey=f"{CANARY}\n{app.private_key_pem}"),
        wire(
            "shop.example.test",
            shop,
            authentication={"type": "Basic", "user": "alice", "pass": f"{CANARY}-pass"},
        ),
    ]


def _load_pem(config: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = config["apps"]["tls"]["certificates"]["load_pem"]
    return entries


def _account(config: dict[str, Any]) -> dict[str, Any]:
    routes = config["apps"]["http"]["servers"]["coretraffic_https"]["routes"]
    (auth,) = [h for r in routes for h in r["handle"] if h["handler"] == "authentication"]
    (account,) = auth["providers"]["http_basic"]["accounts"]
    result: dict[str, Any] = account
    return result


def test_render_redacts_keys_and_hashes(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    document = _render_document(ca)
    run = coretraffic(env, "render", "--routes", str(routes_file(tmp_path, document)), "--http-port", "7080")
    assert run.returncode == 0, run
    assert run.stderr == ""
    assert CANARY not in run.stdout
    assert "PRIVATE KEY" not in run.stdout
    assert "$2b$" not in run.stdout
    config = json.loads(run.stdout)
    assert config["apps"]["http"]["http_port"] == 7080
    entries = _load_pem(config)
    assert [e["tags"] for e in entries] == [["app.example.test"], ["shop.example.test"]]
    assert all(e["key"].startswith("<redacted private key sha256:") for e in entries)
    assert [e["certificate"] for e in entries] == [document[0]["publicKey"], document[1]["publicKey"]]
    assert _account(config)["username"] == "alice"
    assert _account(config)["password"].startswith("<redacted password hash sha256:")
    assert config["admin"]["listen"] == f"unix/{tmp_path / 'state' / 'admin.sock'}"


def test_output_cut_short_by_its_reader_ends_quietly(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    # Far more than a pipe holds (64 KiB), so the command is still writing when the reader goes (`| head -1`).
    document = [wire(f"h{i}.example.test", ca.issue([f"h{i}.example.test"])) for i in range(100)]
    process = subprocess.Popen(
        [sys.executable, "-m", "coretraffic", "render", "--routes", str(routes_file(tmp_path, document))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"{\n"
    process.stdout.close()
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert stderr == b""  # neither a traceback nor Python's "Exception ignored ... BrokenPipeError"
    assert process.returncode == 141


def test_render_show_secrets(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    document = _render_document(ca)
    run = coretraffic(env, "render", "--routes", str(routes_file(tmp_path, document)), "--show-secrets")
    assert run.returncode == 0, run
    config = json.loads(run.stdout)
    assert [e["key"] for e in _load_pem(config)] == [document[0]["privateKey"], document[1]["privateKey"]]
    password_hash = _account(config)["password"]
    assert password_hash.startswith("$2b$04$")  # the cost from CORETRAFFIC_BCRYPT_COST
    assert bcrypt.checkpw(f"{CANARY}-pass".encode(), password_hash.encode())
    assert f"{CANARY}-pass" not in run.stdout  # a hash, never the password itself


def test_render_reports_problems_on_stderr(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    document = [
        wire("app.example.test", ca.issue(["app.example.test"])),
        wire("bad.example.test", ca.issue(["bad.example.test"]), destinationIps=[]),
    ]
    run = coretraffic(env, "render", "--routes", str(routes_file(tmp_path, document)))
    assert run.returncode == 0
    assert run.stderr == "error: bad.example.test: destinationIps: must list at least one address\n"
    assert [e["tags"] for e in _load_pem(json.loads(run.stdout))] == [["app.example.test"]]


def test_bad_flag_value_is_one_line_naming_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    run = coretraffic(env, "render", "--routes", str(routes_file(tmp_path, [])), "--http-port", "70000")
    assert_one_line_error(run, "invalid setting --http-port / CORETRAFFIC_HTTP_PORT", "65535")


@pytest.mark.parametrize(
    ("variable", "value", "flag"),
    [
        ("CORETRAFFIC_HTTP_PORT", "abc", "--http-port"),
        ("CORETRAFFIC_HTTPS_PORT", "0", "--https-port"),
        ("CORETRAFFIC_HTTP3", "maybe", "--http3"),
        ("CORETRAFFIC_BCRYPT_COST", "40", "--bcrypt-cost"),
        ("CORETRAFFIC_LOG_LEVEL", "chatty", "--log-level"),
    ],
)
def test_bad_environment_value_is_one_line_naming_the_variable(
    env: dict[str, str], tmp_path: Path, variable: str, value: str, flag: str
) -> None:
    env[variable] = value
    run = coretraffic(env, "check", "--routes", str(routes_file(tmp_path, [])))
    assert_one_line_error(run, f"invalid setting {flag} / {variable}")


def test_flag_wins_over_environment(env: dict[str, str], tmp_path: Path) -> None:
    env["CORETRAFFIC_HTTP_PORT"] = "7001"
    env["CORETRAFFIC_HTTPS_PORT"] = "7002"
    run = coretraffic(env, "render", "--routes", str(routes_file(tmp_path, [])), "--https-port", "7443")
    assert run.returncode == 0, run
    http_app = json.loads(run.stdout)["apps"]["http"]
    assert (http_app["http_port"], http_app["https_port"]) == (7001, 7443)


def test_unknown_command_is_a_usage_error(env: dict[str, str]) -> None:
    run = coretraffic(env, "frobnicate")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "invalid choice: 'frobnicate'" in run.stderr


def test_render_is_byte_identical_across_runs_with_basic_auth(env: dict[str, str], tmp_path: Path, ca: DemoCA) -> None:
    auth = {"type": "Basic", "user": "alice", "pass": f"{CANARY}-pass"}
    path = str(routes_file(tmp_path, [wire("app.example.test", ca.issue(["app.example.test"]), authentication=auth)]))
    first, second = (coretraffic(env, "render", "--routes", path, "--show-secrets") for _ in range(2))
    assert first.returncode == 0, first
    assert '"password": "$2b$04$' in first.stdout
    assert first.stdout == second.stdout
