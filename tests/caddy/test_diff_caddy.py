"""`coretraffic diff` against a real Caddy: a set is applied by the reconciler, another one is diffed against it.

The desired side goes through `run_diff` with the settings the fixtures render with, so an unchanged host must
come out unchanged byte for byte, basic-auth hosts included (their bcrypt salts differ between renderings).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.render import RenderSettings, render, serialise, with_admin_listen
from coretraffic.cli.diff import run_diff
from coretraffic.core.passwords import BcryptHasher
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.settings import Settings
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.caddy import validated
from tests.support.ports import Ports, free_port

CANARY_PASSWORD = "CANARY-PASSWORD-5d1c"
SECRET_PATTERNS = re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY|\$2[aby]?\$|CANARY")


def wire(ca: DemoCA, host: str, port: int = 9000, **extra: Any) -> dict[str, Any]:
    return {**demo_route(ca, host, port), **extra}


def auth(user: str, password: str) -> dict[str, str]:
    return {"type": "Basic", "user": user, "pass": password}


@dataclasses.dataclass
class Diff:
    code: int
    out: str


@pytest.fixture
def diff(caddy: CaddyProcess, ports: Ports, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `run_diff` on a route set against the fixture Caddy, with the settings the fixtures render with."""

    async def run(configs: Any, *, full: bool = False, as_json: bool = False, **overrides: Any) -> Diff:
        routes = tmp_path / "routes.json"
        routes.write_text(json.dumps(configs))
        given: dict[str, Any] = {
            "caddy_admin": caddy.admin_address.listen,
            "routes": routes,
            "http_port": ports.http,
            "https_port": ports.https,
            "listen_host": "127.0.0.1",
            "base_config": None,
            "http3": False,
        }
        settings = Settings(**(given | overrides))
        capsys.readouterr()
        code = await run_diff(settings, full=full, as_json=as_json)
        return Diff(code, capsys.readouterr().out)

    return run


async def apply(reconciler: Reconciler, configs: list[dict[str, Any]]) -> None:
    result = await reconciler.submit(validated(configs))
    assert result.outcome == "applied", result.summary()


async def test_the_applied_set_diffs_as_unchanged_with_exit_0(ca: DemoCA, reconciler: Reconciler, diff: Any) -> None:
    configs = [wire(ca, "a.example.test"), wire(ca, "b.example.test", authentication=auth("alice", "secret"))]
    await apply(reconciler, configs)
    result = await diff(configs)
    assert result.out.splitlines() == [
        "Caddy runs a config rendered by coretraffic.",
        "0 added, 0 removed, 0 changed, 0 rejected, 2 unchanged",
    ]
    assert result.code == 0
    full = await diff(configs, full=True)
    assert (full.code, full.out) == (0, result.out)  # and no unified diff at all: the documents are equal


async def test_added_removed_and_rejected_hosts(ca: DemoCA, reconciler: Reconciler, diff: Any) -> None:
    kept, gone, broken = wire(ca, "kept.example.test"), wire(ca, "gone.example.test"), wire(ca, "broken.example.test")
    await apply(reconciler, [kept, gone, broken])
    broken = {**broken, "privateKey": kept["privateKey"]}
    added = wire(ca, "new.example.test", 9001)
    result = await diff([kept, broken, added])
    assert result.code == 1
    lines = result.out.splitlines()
    assert "! broken.example.test rejected (served now: stays stale, its last good version keeps serving)" in lines
    assert "    privateKey: does not match the certificate in publicKey" in lines
    assert "- gone.example.test" in lines
    assert lines[lines.index("+ new.example.test") + 1] == "    upstreams 127.0.0.1:9001"
    assert lines[-1] == "1 added, 1 removed, 0 changed, 1 rejected, 1 unchanged"


async def test_forty_hosts_whatever_the_server_layout(ca: DemoCA, reconciler: Reconciler, diff: Any) -> None:
    """Enough hosts for render to group them (if it does): hosts are still read one by one."""
    configs = [wire(ca, f"h{i:02}.example.test", 9000 + i % 3) for i in range(40)]
    await apply(reconciler, configs)
    assert (await diff(configs)).code == 0
    result = await diff([*configs[:-1], {**configs[-1], "destinationPorts": [9100]}])
    assert result.out.splitlines()[1:] == [
        "~ h39.example.test",
        "    upstream + 127.0.0.1:9100",
        "    upstream - 127.0.0.1:9000",
        "0 added, 0 removed, 1 changed, 0 rejected, 39 unchanged",
    ]
    assert result.code == 1


async def test_upstreams_added_and_removed(ca: DemoCA, reconciler: Reconciler, diff: Any) -> None:
    config = wire(ca, "app.example.test")
    await apply(reconciler, [config])
    result = await diff([{**config, "destinationIps": ["127.0.0.2", "127.0.0.3"]}])
    assert result.code == 1
    assert result.out.splitlines()[1:] == [
        "~ app.example.test",
        "    upstream + 127.0.0.2:9000",
        "    upstream + 127.0.0.3:9000",
        "    upstream - 127.0.0.1:9000",
        "0 added, 0 removed, 1 changed, 0 rejected, 0 unchanged",
    ]


async def test_certificate_replaced_shows_fingerprints_names_and_expiry(
    ca: DemoCA, reconciler: Reconciler, diff: Any
) -> None:
    config = wire(ca, "app.example.test")
    await apply(reconciler, [config])
    issued = ca.issue(["app.example.test", "www.app.example.test"])
    old_fingerprint = validated([config]).routes[0].certificate.sha256
    new = {**config, "publicKey": issued.certificate_pem, "privateKey": issued.private_key_pem}
    new_certificate = validated([new]).routes[0].certificate
    result = await diff([new], as_json=True)
    assert result.code == 1
    [host] = json.loads(result.out)["hosts"]
    [change] = host["changes"]
    assert change["field"] == "certificate"
    assert change["from"]["sha256"] == old_fingerprint
    assert change["to"] == {
        "sha256": new_certificate.sha256,
        "names": ["app.example.test", "www.app.example.test"],
        "not_after": new_certificate.not_after.isoformat(),
    }
    text = (await diff([new])).out
    assert (
        f"      + sha256 {new_certificate.sha256[:16]}, names app.example.test, www.app.example.test, expires " in text
    )


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, auth("alice", "pw"), "    basic auth added (user alice)"),
        (auth("alice", "pw"), None, "    basic auth removed (user alice)"),
        (auth("alice", "pw"), auth("bob", "pw"), "    basic auth user alice -> bob"),
        (auth("alice", "pw"), auth("alice", "new-pw"), "    basic auth password changed (user alice)"),
    ],
)
async def test_basic_auth_changes(
    ca: DemoCA,
    reconciler: Reconciler,
    diff: Any,
    before: dict[str, str] | None,
    after: dict[str, str] | None,
    expected: str,
) -> None:
    config = wire(ca, "app.example.test")
    await apply(reconciler, [{**config, "authentication": before} if before else config])
    result = await diff([{**config, "authentication": after} if after else config])
    assert result.out.splitlines()[1:] == ["~ app.example.test", expected, result.out.splitlines()[-1]]
    assert result.code == 1


async def test_version_header_and_settings_changes(
    ca: DemoCA, admin: CaddyAdmin, render_settings: RenderSettings, diff: Any
) -> None:
    configs = [wire(ca, "app.example.test")]
    older = dataclasses.replace(render_settings, version="0.0.1")
    config = render(validated(configs).routes, older, BaseConfig(), BcryptHasher(4))
    await admin.load(serialise(with_admin_listen(config, admin.address.listen)))
    result = await diff(configs)
    assert result.code == 1
    assert f"    version header 0.0.1 -> {render_settings.version}" in result.out.splitlines()

    # A setting outside the hosts (here the HTTPS port) is named by its path in the config.
    port = free_port()
    moved = await diff(configs, https_port=port)
    lines = moved.out.splitlines()
    assert f"~ config apps.http.https_port: {render_settings.https_port} -> {port}" in lines
    listen = f'"127.0.0.1:{render_settings.https_port}" -> "127.0.0.1:{port}"'
    assert f"~ config apps.http.servers.coretraffic_https.listen[0]: {listen}" in lines


async def test_servers_coretraffic_does_not_own_are_described_and_left_alone(
    ca: DemoCA, admin: CaddyAdmin, render_settings: RenderSettings, ports: Ports, diff: Any
) -> None:
    configs = [wire(ca, "app.example.test")]
    rendered = render(validated(configs).routes, render_settings, BaseConfig(), BcryptHasher(4))
    config = with_admin_listen(rendered, admin.address.listen)
    port = free_port()
    config["apps"]["http"]["servers"]["operator"] = {
        "listen": [f"127.0.0.1:{port}"],
        "routes": [{"handle": [{"handler": "static_response", "body": "operator"}]}],
    }
    await admin.load(serialise(config))
    result = await diff(configs)
    assert result.out.splitlines() == [
        "Caddy runs a config rendered by coretraffic.",
        f"= server operator: not managed by coretraffic, left alone; listen 127.0.0.1:{port}, 1 route",
        "0 added, 0 removed, 0 changed, 0 rejected, 1 unchanged",
    ]
    assert result.code == 0  # run carries it over: nothing would change

    # One that cannot stay: a server of another config on the port coretraffic serves HTTPS on.
    squatter = {"listen": [f"127.0.0.1:{ports.https}"], "routes": []}
    await admin.load(serialise({**config, "apps": {"http": {"servers": {"squatter": squatter}}}}))
    result = await diff(configs)
    assert (
        f"- server squatter: not managed by coretraffic, removed: it listens on port {ports.https}, which the "
        f"rendered config uses; listen 127.0.0.1:{ports.https}, 0 routes"
    ) in result.out.splitlines()
    assert result.code == 1


async def test_an_empty_and_a_foreign_caddy_are_described(
    ca: DemoCA, caddy: CaddyProcess, admin: CaddyAdmin, diff: Any
) -> None:
    configs = [wire(ca, "app.example.test")]
    empty = await diff(configs)  # the fixture Caddy has only its admin block
    assert empty.out.splitlines()[:2] == ["Caddy runs an empty config (no apps).", "+ app.example.test"]
    assert empty.code == 1

    site = {"listen": [f"127.0.0.1:{free_port()}"], "routes": [{"match": [{"host": ["legacy.example.test"]}]}]}
    await admin.load(
        json.dumps(
            {"admin": {"listen": caddy.admin_address.listen}, "apps": {"http": {"servers": {"srv0": site}}}}
        ).encode()
    )
    foreign = await diff(configs, as_json=True)
    plan = json.loads(foreign.out)
    assert plan["running"] == "foreign"
    assert plan["unmanaged"] == [{"name": "server srv0", "fate": "left alone", "listen": site["listen"], "routes": 1}]
    assert [h["host"] for h in plan["hosts"]] == ["app.example.test"]
    assert foreign.code == 1


async def test_no_output_mode_shows_a_secret(ca: DemoCA, reconciler: Reconciler, diff: Any) -> None:
    served = [
        wire(ca, "auth.example.test", authentication=auth("alice", CANARY_PASSWORD)),
        wire(ca, "same.example.test", authentication=auth("bob", CANARY_PASSWORD + "-same")),
        wire(ca, "gone.example.test", authentication=auth("carol", CANARY_PASSWORD + "-gone")),
    ]
    await apply(reconciler, served)
    bad_key = "-----BEGIN PRIVATE KEY-----\nCANARY" + "A" * 60 + "\n-----END PRIVATE KEY-----\n"
    desired = [
        {**served[0], "authentication": auth("alice", CANARY_PASSWORD + "-new")},
        served[1],
        wire(ca, "new.example.test", authentication=auth("dave", CANARY_PASSWORD + "-new")),
        {**wire(ca, "broken.example.test"), "privateKey": bad_key},
        {**wire(ca, "long.example.test"), "authentication": auth("erin", CANARY_PASSWORD * 10)},
    ]
    keys = [str(c["privateKey"]) for c in served + desired]
    for mode in ({}, {"full": True}, {"as_json": True}, {"as_json": True, "full": True}):
        result = await diff(desired, **mode)
        assert result.code == 1
        assert SECRET_PATTERNS.search(result.out) is None, mode
        for key in keys:  # not even a line of a key's body
            assert not any(len(line) > 20 and line in result.out for line in key.splitlines()), mode
    assert "<redacted password hash sha256:" in (await diff(desired, full=True)).out


# -- the command as a process: exit codes and one-line errors ---------------------------------------------------


def coretraffic_diff(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORETRAFFIC_")}
    return subprocess.run(
        [sys.executable, "-m", "coretraffic", "diff", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_exit_codes(
    ca: DemoCA, caddy: CaddyProcess, reconciler: Reconciler, ports: Ports, tmp_path: Path
) -> None:
    configs = [wire(ca, "app.example.test", authentication=auth("alice", "pw"))]
    await apply(reconciler, configs)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(configs))
    flags = [
        f"--caddy-admin={caddy.admin_address.listen}",
        f"--http-port={ports.http}",
        f"--https-port={ports.https}",
        "--listen-host=127.0.0.1",
        "--caddy-metrics-listen=",  # as the fixtures render (no CORETRAFFIC_* variable reaches this command)
        # A state dir of its own: the default one in $HOME is shared with whatever else runs on the machine.
        f"--state-dir={tmp_path / 'state'}",
    ]

    same = coretraffic_diff("--routes", str(routes), *flags)
    assert (same.returncode, same.stderr) == (0, ""), same.stderr
    assert same.stdout.endswith("0 added, 0 removed, 0 changed, 0 rejected, 1 unchanged\n")
    assert "\x1b[" not in same.stdout  # piped: no colour
    assert coretraffic_diff("--routes", "-", *flags, stdin=routes.read_text()).stdout == same.stdout

    routes.write_text(json.dumps([*configs, wire(ca, "new.example.test")]))
    changed = coretraffic_diff("--routes", str(routes), "--json", *flags)
    assert changed.returncode == 1, changed.stderr
    assert json.loads(changed.stdout)["summary"]["added"] == 1

    unreachable = coretraffic_diff("--routes", str(routes), f"--caddy-admin=unix/{tmp_path}/nobody.sock")
    routes.write_text("[{not json")
    bad_file = coretraffic_diff("--routes", str(routes), *flags)
    missing = coretraffic_diff("--routes", str(tmp_path / "missing.json"), *flags)
    for failed, reason in (
        (unreachable, "no Caddy admin API at unix/"),
        (bad_file, "not valid JSON"),
        (missing, "cannot read"),
    ):
        assert failed.returncode == 2
        assert failed.stdout == ""
        assert len(failed.stderr.splitlines()) == 1 and reason in failed.stderr, failed.stderr
