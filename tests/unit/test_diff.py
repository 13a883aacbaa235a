"""Unit tests of `coretraffic.diff` (pure): golden plans on fixed inputs, and what the plan must get right.

Golden cases live in `tests/testdata/diff/<case>/`: `running.json` (what `GET /config/` returned), `routes.json` (the
desired set, wire format), `desired.json` (it rendered, fixed so that renderer changes do not move these goldens;
`settings.json` says how), and the expected `expected.txt` (plain plan), `expected.json` (`--json`) and
`expected_full.diff` (`--full`). After an
intended change: `UPDATE_GOLDEN=1 pytest tests/unit/test_diff.py` (the golden tests then skip), review `git diff
tests/testdata/diff`, and run again without the variable.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import io
import json
import random
import re
import subprocess
import sys
from typing import Any

import bcrypt
import pytest

from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import HTTPS_SERVER, JSON, route_id, split_dial
from coretraffic.caddyjson.readback import read_config
from coretraffic.caddyjson.redact import redact
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.cli.diff import _print_plan
from coretraffic.core.validate import Validation, validate_route_set
from coretraffic.diff.plan import Plan, plan_diff
from coretraffic.diff.report import format_json, format_text
from coretraffic.diff.unified import _AnchoredMatcher, _pretty, full_diff
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support import golden
from tests.support.golden import fake_hash

GOLDEN = golden.DIFF_CASES
CASES = ("changes", "unchanged", "upgrade", "foreign", "empty")
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)  # inside the fixed certificates' validity
OUTPUTS = {
    "expected.txt": lambda plan: format_text(plan),
    "expected.json": lambda plan: format_json(plan),
    "expected_full.diff": lambda plan: full_diff(plan),
}


def load(case: str, name: str) -> Any:
    return json.loads((GOLDEN / case / name).read_text())


def case_plan(case: str) -> Plan:
    validation = validate_route_set(load(case, "routes.json"), NOW)
    return plan_diff(load(case, "running.json"), load(case, "desired.json"), validation)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_golden(case: str, output: str) -> None:
    text = OUTPUTS[output](case_plan(case))
    path = GOLDEN / case / output
    golden.update_if_asked(path, text)
    assert text == path.read_text()


def test_the_golden_changes_case_exercises_every_kind_of_change() -> None:
    """Guards the golden files themselves: regenerated inputs must still show each kind."""
    plan = case_plan("changes")
    assert plan.counts == {"added": 2, "removed": 1, "changed": 5, "rejected": 2, "unchanged": 2}
    changes = {(c["field"], c.get("change")) for entry in plan.hosts for c in entry.get("changes", [])}
    assert changes == {
        ("upstreams", None),
        ("certificate", None),
        ("basic_auth", "added"),
        ("basic_auth", "removed"),
        ("basic_auth", "user"),
        ("basic_auth", "password"),
    }
    assert {u["name"]: u["fate"] for u in plan.unmanaged} == {
        "server legacy": "left alone",  # foreign: run carries it over
        "server retired": "removed: no longer in the base config",
        "server squatter": "removed: it listens on port 8000, which the rendered config uses",
        "server srv1": "left alone",  # the base config's, unchanged
    }
    assert [w["host"] for w in plan.warnings] == ["expired.example.test"]
    assert plan.has_changes


def test_unchanged_set_has_no_changes_and_an_empty_full_diff() -> None:
    plan = case_plan("unchanged")
    assert not plan.has_changes
    assert plan.counts["unchanged"] == 2
    assert full_diff(plan) == ""


def test_the_diff_package_touches_no_edge() -> None:
    """Planning and printing stay pure: no HTTP, sockets, metrics, processes or event loop, nothing of the command."""
    probe = "import sys, coretraffic.diff.plan, coretraffic.diff.report, coretraffic.diff.unified; print(*sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    edges = ("httpx", "websockets", "prometheus_client", "subprocess", "asyncio")
    edge_packages = ("coretraffic.caddy.", "coretraffic.app", "coretraffic.cli")
    assert [m for m in loaded if m.split(".")[0] in edges or m.startswith(edge_packages)] == []


# -- reading hosts from other layouts ----------------------------------------------------------------------------


def rendered(hosts: list[str], version: str = "1.2.3") -> tuple[JSON, Validation]:
    configs = load("changes", "routes.json")
    by_host = {c.get("hostName"): c for c in configs}
    validation = validate_route_set([by_host[h] for h in hosts], NOW)
    return render(validation.routes, RenderSettings(version), BaseConfig(), fake_hash), validation


def bucketed(config: JSON, hosts: list[str], upstreams: dict[str, list[str]]) -> JSON:
    """`config` with `hosts` moved into shared routes (one per port list) whose `map` handler picks each host's
    upstream addresses for the proxy's `a` sources, which hold the ports."""
    bucketed = copy.deepcopy(config)
    routes = bucketed["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    template = next(r for r in routes if r.get("@id") == route_id(hosts[0]))
    shared_handlers = [h for h in template["handle"] if h["handler"] != "reverse_proxy"]
    by_ports: dict[tuple[str, ...], list[str]] = {}
    for host in hosts:
        by_ports.setdefault(tuple(split_dial(u)[1] for u in upstreams[host]), []).append(host)
    buckets = [
        {
            "match": [{"host": members}],
            "handle": [
                {
                    "handler": "map",
                    "source": "{http.request.host}",
                    "destinations": [f"{{slot_{i}}}" for i in range(len(ports))],
                    "mappings": [
                        {"@id": route_id(h), "input": h, "outputs": [split_dial(u)[0] for u in upstreams[h]]}
                        for h in members
                    ],
                },
                *shared_handlers,
                {
                    "handler": "reverse_proxy",
                    "dynamic_upstreams": {
                        "source": "multi",
                        "sources": [{"source": "a", "name": f"{{slot_{i}}}", "port": p} for i, p in enumerate(ports)],
                    },
                },
            ],
        }
        for ports, members in by_ports.items()
    ]
    kept = [r for r in routes if r.get("@id") not in {route_id(h) for h in hosts}]
    bucketed["apps"]["http"]["servers"][HTTPS_SERVER]["routes"] = [*buckets, *kept]
    return bucketed


def test_hosts_in_a_shared_route_with_a_map_are_read_from_their_map_entries() -> None:
    hosts = ["expired.example.test", "same.example.test"]
    config, _ = rendered(hosts)
    view = read_config(bucketed(config, hosts, {"expired.example.test": ["10.0.0.7:80"], "same.example.test": []}))
    assert view.hosts["expired.example.test"].upstreams == ("10.0.0.7:80",)
    assert view.hosts["same.example.test"].version == "1.2.3"  # from the handlers of the shared route
    assert view.hosts["same.example.test"].pem is not None


def test_a_host_moving_between_layouts_is_compared_by_what_it_serves() -> None:
    hosts = ["expired.example.test", "same.example.test"]
    flat, validation = rendered(hosts)
    upstreams = {h: list(r.upstreams) for h in hosts for r in validation.routes if r.host == h}
    moved = plan_diff(flat, bucketed(flat, hosts, upstreams), validation)
    assert moved.counts == {"added": 0, "removed": 0, "changed": 2, "rejected": 0, "unchanged": 0}
    assert {c["field"] for entry in moved.hosts for c in entry["changes"]} == {"route"}  # same upstreams, new shape

    upstreams["same.example.test"] = ["10.9.9.9:80"]
    running = bucketed(flat, hosts, {**upstreams, "same.example.test": ["10.0.1.1:8080"]})
    changed = plan_diff(running, bucketed(flat, hosts, upstreams), validation)
    assert [(e["host"], e["changes"]) for e in changed.hosts] == [
        ("same.example.test", [{"field": "upstreams", "added": ["10.9.9.9:80"], "removed": ["10.0.1.1:8080"]}])
    ]


def nested(config: JSON) -> JSON:
    """`config` with the HTTPS server's routes inside a subroute."""
    nested = copy.deepcopy(config)
    server = nested["apps"]["http"]["servers"][HTTPS_SERVER]
    server["routes"] = [{"handle": [{"handler": "subroute", "routes": server["routes"]}]}]
    return nested


def test_host_routes_are_found_at_any_depth() -> None:
    config, validation = rendered(["same.example.test"])
    assert not plan_diff(nested(config), nested(config), validation).has_changes
    moved = copy.deepcopy(config)
    moved["apps"]["http"]["servers"][HTTPS_SERVER]["routes"][0]["handle"][-1]["upstreams"] = [{"dial": "10.0.0.9:80"}]
    plan = plan_diff(nested(moved), nested(config), validation)
    assert plan.hosts == (
        {
            "host": "same.example.test",
            "action": "changed",
            "changes": [{"field": "upstreams", "added": ["10.0.1.1:8080"], "removed": ["10.0.0.9:80"]}],
        },
    )


def test_a_difference_no_host_explains_is_still_reported() -> None:
    config, validation = rendered(["expired.example.test", "same.example.test"])
    reordered = copy.deepcopy(config)
    routes = reordered["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    routes[0], routes[1] = routes[1], routes[0]
    plan = plan_diff(reordered, config, validation)
    assert plan.config == ({"path": "host routes", "change": "changed", "detail": "see --full"},)
    assert plan.has_changes
    assert "~ config host routes (see --full)" in format_text(plan)


def test_a_config_change_shows_its_old_and_new_value_with_secrets_redacted() -> None:
    config, validation = rendered(["same.example.test"])
    running = copy.deepcopy(config)
    running["storage"] = {"module": "s3", "bucket": "old", "secret_access_key": "CANARY-OLD-SECRET"}
    config = {**config, "storage": {"module": "s3", "bucket": "new", "secret_access_key": "CANARY-NEW-SECRET"}}
    plan = plan_diff(running, config, validation)
    text = format_text(plan)
    assert '~ config storage.bucket: "old" -> "new"' in text
    assert '~ config storage.secret_access_key: "<redacted sha256:' in text
    assert "CANARY" not in text + format_json(plan)


def test_other_route_settings_are_reported_per_host() -> None:
    config, validation = rendered(["same.example.test"])
    running = copy.deepcopy(config)
    route = running["apps"]["http"]["servers"][HTTPS_SERVER]["routes"][0]
    route["handle"][-1]["transport"]["keep_alive"]["idle_timeout"] = "2m"
    plan = plan_diff(running, config, validation)
    assert plan.hosts == (
        {"host": "same.example.test", "action": "changed", "changes": [{"field": "route", "change": "other settings"}]},
    )


@pytest.mark.parametrize(
    ("base_site", "fate", "line"),
    [
        ({"listen": [":9000"], "routes": []}, "taken over by the base config", "~ server site: "),
        ({"listen": [":9001"], "routes": []}, "changed by the base config", "~ server site: "),
    ],
)
def test_a_foreign_server_the_base_config_now_defines(base_site: JSON, fate: str, line: str) -> None:
    _, validation = rendered(["same.example.test"])
    running, _ = rendered(["same.example.test"])
    running["apps"]["http"]["servers"]["site"] = {"listen": [":9000"], "routes": []}  # added by hand
    base = BaseConfig({"apps": {"http": {"servers": {"site": base_site}}}})
    desired = render(validation.routes, RenderSettings("1.2.3"), base, fake_hash)
    plan = plan_diff(running, desired, validation)
    assert [(u["name"], u["fate"]) for u in plan.unmanaged] == [("server site", fate)]
    assert plan.has_changes  # either way, run loads a different config
    assert any(text.startswith(line + "not managed by coretraffic, " + fate) for text in format_text(plan).splitlines())


@pytest.mark.parametrize("running", [None, {}, {"admin": {"listen": "unix//a.sock"}}])
def test_an_empty_caddy_gets_every_host_added(running: Any) -> None:
    config, validation = rendered(["same.example.test"])
    plan = plan_diff(running, config, validation)
    assert plan.running == "empty"
    assert plan.counts["added"] == 1
    assert format_text(plan).startswith("Caddy runs an empty config (no apps).\n+ same.example.test\n")


# -- passwords: checked against the running hash, within a budget -----------------------------------------------


def with_password_hashes(config: JSON, hashed: str) -> JSON:
    running = copy.deepcopy(config)
    for route in running["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]:
        for handler in route.get("handle", []):
            if handler["handler"] == "authentication":
                handler["providers"]["http_basic"]["accounts"][0]["password"] = hashed
    return running


def test_password_checks_stop_at_the_budget_and_say_so() -> None:
    configs = [
        {**c, "authentication": {"type": "Basic", "user": "u", "pass": "same"}}
        for c in load("unchanged", "routes.json")
    ]
    validation = validate_route_set(configs, NOW)
    config = render(validation.routes, RenderSettings("1"), BaseConfig(), fake_hash)
    running = with_password_hashes(config, bcrypt.hashpw(b"same", bcrypt.gensalt(4)).decode())

    # One check at cost 4 covers both hosts: the same (password, hash) pair is checked once.
    assert plan_diff(running, config, validation, password_work=2**4).counts["unchanged"] == 2
    starved = plan_diff(running, config, validation, password_work=2**4 - 1)
    assert starved.counts["changed"] == 2
    assert "    basic auth password not verified (user u; bcrypt check budget spent" in format_text(starved)
    assert starved.has_changes  # unknown is not "no changes"


def test_a_running_hash_that_is_not_bcrypt_is_not_verified() -> None:
    configs = [{**load("unchanged", "routes.json")[1], "authentication": {"type": "Basic", "user": "u", "pass": "p"}}]
    validation = validate_route_set(configs, NOW)
    config = render(validation.routes, RenderSettings("1"), BaseConfig(), fake_hash)
    plan = plan_diff(with_password_hashes(config, "$argon2id$v=19$x"), config, validation)
    assert plan.hosts[0]["changes"] == [{"field": "basic_auth", "change": "password not verified", "user": "u"}]


# -- printing ----------------------------------------------------------------------------------------------------


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = case_plan("changes")
    assert "\x1b[32m+ new.example.test\x1b[0m" in format_text(plan, colour=True)
    assert "\x1b[" not in format_text(plan)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    printed: dict[str, str] = {}
    for no_color in ("", "1"):
        monkeypatch.setenv("NO_COLOR", no_color)
        terminal = Terminal()
        monkeypatch.setattr("sys.stdout", terminal)
        _print_plan(plan, full=True, as_json=False)
        printed[no_color] = terminal.getvalue()
    assert "\x1b[32m" in printed[""] and "\x1b[" not in printed["1"]


def test_full_diff_is_a_correct_patch() -> None:
    """Applying the printed hunks to the running document gives the desired one (the anchored matcher is sound)."""
    plan = case_plan("changes")
    old, new = (_pretty(redact(d, certificates=True)) for d in plan.documents)
    assert apply_unified(old, full_diff(plan)) == new


def test_anchored_matching_agrees_with_difflib_on_random_edits() -> None:
    randomness = random.Random(7)
    for _ in range(500):
        alphabet = [f"line {k}" for k in range(randomness.randint(1, 25))]
        a = [randomness.choice(alphabet) for _ in range(randomness.randint(0, 40))]
        b = list(a)
        for _ in range(randomness.randint(0, 6)):
            at = randomness.randint(0, len(b))
            if randomness.random() < 0.5 and b:
                del b[min(at, len(b) - 1)]
            else:
                b.insert(at, randomness.choice([*alphabet, "new"]))
        matcher = _AnchoredMatcher(a, b)
        rebuilt = [
            line for tag, i1, i2, j1, j2 in matcher.get_opcodes() for line in (a[i1:i2] if tag == "equal" else b[j1:j2])
        ]
        assert rebuilt == b
        # Never worse than no matching at all, and exact when nothing changed.
        assert matcher.ratio() >= 0
        if a == b:
            assert matcher.get_opcodes() == difflib.SequenceMatcher(None, a, b).get_opcodes()


def apply_unified(old: list[str], patch: str) -> list[str]:
    result: list[str] = []
    position = 0
    for line in patch.splitlines()[2:]:
        if line.startswith("@@"):
            header = re.match(r"@@ -(\d+)(?:,(\d+))?", line)
            assert header is not None
            start, length = int(header[1]), int(header[2] or 1)
            begin = start if length == 0 else start - 1  # an empty range names the line before it
            result += old[position:begin]
            position = begin
        elif line.startswith(" ") or line.startswith("-"):
            assert old[position] == line[1:]
            if line.startswith(" "):
                result.append(line[1:])
            position += 1
        else:
            result.append(line[1:])
    return result + old[position:]


def test_a_mass_removal_is_shown_held_back_as_run_would_hold_it() -> None:
    ca = DemoCA("diff removal CA")
    configs = [demo_route(ca, f"h{i:02}.example.test", 8080) for i in range(12)]

    def of(count: int) -> tuple[JSON, Validation]:
        validation = validate_route_set(configs[:count], NOW)
        return render(validation.routes, RenderSettings("1.2.3"), BaseConfig(), fake_hash), validation

    running, _ = of(12)
    plan = plan_diff(running, *of(1))
    assert plan.counts["removed"] == 11 and plan.held_back.startswith("run holds back the removal of 11 of 12 hosts")
    assert f"! held back: {plan.held_back}" in format_text(plan)
    assert plan_diff(running, *of(6)).held_back == ""  # half of them: an ordinary change
