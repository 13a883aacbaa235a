"""Hostile input, property-based: validation, rendering, a real Caddy, the reconciler, the routes file and
`coretraffic check` on whatever `tests/support/hostile.py` generates, plus one route set of 10,000.

Budgets: the pure properties run thousands of examples; the ones that reach a real Caddy about fifty. Every
example has a deadline, so a hang is a failure, not a stuck CI job.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from coretraffic import cli
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.render import RenderSettings, render, serialise
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import validate_route_set
from coretraffic.errors import FramingError, RouteSetError, RoutesFileError
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.sources.coreflow import framing
from coretraffic.sources.coreflow.handler import reply_for
from coretraffic.sources.intake import Intake
from coretraffic.sources.routes_file import parse_routes_document
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import OneCaddy
from tests.support.canary import Canary
from tests.support.dataplane import serves
from tests.support.hostile import (
    MANY,
    NOW,
    POOL,
    POOL_CA,
    assert_clean,
    assert_sound,
    configs,
    documents,
    hostile_string,
    items_of,
)
from tests.support.ports import Ports

pytestmark = pytest.mark.timeout(240)

# Fixtures (the canary, the log capture, a Caddy) are shared by all examples of a test, on purpose.
SHARED_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
PURE = settings(max_examples=1500, deadline=datetime.timedelta(seconds=5), suppress_health_check=SHARED_FIXTURES)
WITH_CADDY = settings(max_examples=50, deadline=datetime.timedelta(seconds=30), suppress_health_check=SHARED_FIXTURES)
RENDER_SETTINGS = RenderSettings(version="test")
HASHER = BcryptHasher(cost=4)
ROUTES = Path("routes.json")


@pytest.fixture(autouse=True)
def pool_secrets(canary: Canary) -> None:
    for pair in (*POOL, MANY):
        canary.certificate(pair.certificate)
        canary.key(pair.key)


# -- validation and rendering, pure -----------------------------------------------------------------------------


@PURE
@given(document=documents)
def test_validation_only_ever_raises_route_set_error_and_keeps_its_promises(document: Any, canary: Canary) -> None:
    items = items_of(document)
    try:
        validation = validate_route_set(document, NOW)
    except RouteSetError as exc:
        assert items is None, f"RouteSetError for a usable route set: {exc}"
        canary.check(str(exc), "a RouteSetError")
        return
    assert items is not None, "a document that is not a route set was accepted"
    assert_sound(items, validation)
    event(f"hosts accepted: {min(len(validation.routes), 3)}{'+' if len(validation.routes) > 3 else ''}")
    canary.check("\n".join(map(str, validation.problems)), "the problems")
    # Whatever was accepted renders to JSON (Caddy's own acceptance is checked against a real one below).
    config = json.loads(serialise(render(validation.routes, RENDER_SETTINGS, BaseConfig(), HASHER)))
    assert isinstance(config, dict)


@settings(PURE, max_examples=300)
@given(raw=st.one_of(st.binary(max_size=400), hostile_string.map(str.encode)))
def test_routes_file_parse_only_ever_raises_routes_file_error(raw: bytes, canary: Canary) -> None:
    try:
        parse_routes_document(raw, ROUTES)
    except RoutesFileError as exc:
        assert "\n" not in str(exc) and str(ROUTES) in str(exc)


@settings(PURE, max_examples=600)
@given(document=documents, encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]), cut=st.integers(0, 40))
def test_routes_file_of_a_hostile_set_parses_and_validates_soundly(
    document: Any, encoding: str, cut: int, canary: Canary
) -> None:
    raw = json.dumps(document, ensure_ascii=False).encode(encoding)
    if cut:  # a file cut short, as by a writer that was not atomic
        raw = raw[: max(0, len(raw) - cut)]
    try:
        parsed = parse_routes_document(raw, ROUTES)
    except RoutesFileError as exc:
        canary.check(str(exc), "a routes file error")  # it gives the position, never the text around it
        return
    items = items_of(parsed)
    try:
        validation = validate_route_set(parsed, NOW)
    except RouteSetError:
        assert items is None
        return
    assert items is not None
    assert_sound(items, validation)


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """`cli.main` sets logging up for a process; in-process runs must hand the suite's capture back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def check_command(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with logging_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check", "--routes", str(path)])
    return code, out.getvalue(), err.getvalue()


@settings(PURE, max_examples=200)
@given(document=documents)
def test_check_command_on_hostile_files_answers_in_lines_and_an_exit_code(
    document: Any, canary: Canary, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("check") / "routes.json"
    path.write_text(json.dumps(document))
    code, out, err = check_command(path)
    canary.check(out + err, "`coretraffic check` output")
    if items_of(document) is None:
        assert code == 2 and err.startswith("coretraffic: ") and err.count("\n") == 1, (code, err[:200])
        return
    lines = out.splitlines()
    assert lines and re.fullmatch(r"\d+ hosts? valid, \d+ errors?, \d+ warnings?, \d+ notices?", lines[-1]), out[-200:]
    assert all(line.startswith(("error: ", "warning: ", "notice: ")) for line in lines[:-1])
    # Exit 1 when a host is rejected; warnings alone (a duplicate host, a chain short of a root) do not fail it.
    assert code == (1 if any(line.startswith("error: ") for line in lines) else 0)


# -- a real Caddy, through the reconciler -----------------------------------------------------------------------


@WITH_CADDY
@given(hostile=st.lists(configs(), min_size=3, max_size=6))
async def test_hostile_configs_beside_good_ones_reach_caddy_and_cost_no_good_host(
    hostile: list[Any], reconciler: Reconciler, upstream: DemoUpstream, ports: Ports, canary: Canary
) -> None:
    good = [
        {
            "hostName": name,
            "destinationIps": ["127.0.0.1"],
            "destinationPorts": [upstream.port],
            "privateKey": POOL[1].key,
            "publicKey": POOL[1].certificate,
        }
        for name in POOL[1].names
    ]
    # Through intake, as Coreflow and the routes file feed it: problems are logged (and the log is searched).
    applied = await Intake(OneCaddy(reconciler)).submit([*good, *hostile])
    result = await applied[OneCaddy.name]
    assert result.outcome in ("applied", "unchanged"), result.summary()
    event(f"{result.outcome}, hostile hosts served: {min(len(result.applied_hosts) - len(good), 2)}")
    refused = [p for p in result.rejected if "Caddy rejected it" in p.message]
    assert not refused, f"validation let through what Caddy refuses: {refused[0]}"
    for name in POOL[1].names:
        assert name in result.applied_hosts
        assert await serves(POOL_CA, ports.https, name), f"{name} not served after a hostile set"
    canary.check(json.dumps(reply_for(result)), "the Coreflow reply")


async def test_unusable_documents_change_nothing(reconciler: Reconciler, upstream: DemoUpstream, ports: Ports) -> None:
    good = {
        "hostName": "a.example.test",
        "destinationIps": ["127.0.0.1"],
        "destinationPorts": [upstream.port],
        "privateKey": POOL[0].key,
        "publicKey": POOL[0].certificate,
    }
    assert (await (await Intake(OneCaddy(reconciler)).submit([good]))[OneCaddy.name]).ok
    loads = reconciler.loads
    for document in (None, 7, "[]", {"routes": [good]}, {"reverseConfigs": {"0": good}}, {"reverseConfigs": None}):
        with pytest.raises(RouteSetError):
            await Intake(OneCaddy(reconciler)).submit(document)
    assert reconciler.loads == loads
    assert await serves(POOL_CA, ports.https, "a.example.test")


# -- 10,000 routes ------------------------------------------------------------------------------------------------


def hostile_variant(config: dict[str, Any], kind: int) -> Any:
    """One of a dozen ways to break a config, picked by `kind`."""
    broken = dict(config)
    match kind % 12:
        case 0:
            broken["hostName"] = "{env.HOME}." + config["hostName"]
        case 1:
            broken["hostName"] = config["hostName"] + "\r\nX: y"
        case 2:
            broken["destinationPorts"] = ["8080"]
        case 3:
            broken["destinationPorts"] = [0]
        case 4:
            del broken["publicKey"]
        case 5:
            broken["privateKey"] = POOL[0].key  # does not match
        case 6:
            broken["publicKey"] = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        case 7:
            broken["destinationIps"] = ["{http.request.host}"]
        case 8:
            broken["hostName"] = "a" * 100_000
        case 9:
            broken["authentication"] = {"type": "Basic", "user": "a:b", "pass": "x"}
        case 10:
            broken["authentication"] = {"type": "Basic", "user": "{env.USER}", "pass": "x"}
        case _:
            return ["not", "a", "config"]
    return broken


async def test_10000_routes_a_tenth_of_them_hostile(
    reconciler: Reconciler, upstream: DemoUpstream, ports: Ports
) -> None:
    configs_: list[Any] = []
    for i in range(10_000):
        config = {
            "hostName": f"h{i:05}.many.example.test",
            "destinationIps": ["127.0.0.1"],
            "destinationPorts": [upstream.port],
            "privateKey": MANY.key,
            "publicKey": MANY.certificate,
        }
        configs_.append(hostile_variant(config, i // 10) if i % 10 == 3 else config)
    configs_.append(dict(configs_[0]))  # and one duplicate host

    started = time.monotonic()
    validation = validate_route_set(configs_, NOW)
    validated_s = time.monotonic() - started
    assert_sound(configs_, validation)
    assert len(validation.routes) == 9_000
    assert len(validation.errors) >= 1_000  # each hostile config named
    assert [p.message for p in validation.warnings if p.field == "hostName"] == [
        "config #10001 ignored (duplicate of #1, which is served)"
    ]

    started = time.monotonic()
    result = await reconciler.submit(validation)
    applied_s = time.monotonic() - started
    print(f"\n10,000 routes (1,001 hostile): validated in {validated_s:.2f} s, applied in {applied_s:.2f} s")
    assert result.outcome == "applied", result.summary()
    assert len(result.applied_hosts) == 9_000
    for i in (0, 4_999, 9_999):
        assert await serves(POOL_CA, ports.https, f"h{i:05}.many.example.test")


# -- bugs found here, pinned until fixed -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"[" * 100_000, b"[" + b"9" * 5_000 + b"]"], ids=["deep-nesting", "huge-integer"])
def test_routes_file_parse_of_pathological_json_is_a_routes_file_error(raw: bytes) -> None:
    with pytest.raises(RoutesFileError):
        parse_routes_document(raw, ROUTES)


def test_a_deeply_nested_coreflow_frame_is_a_framing_error() -> None:
    with pytest.raises(FramingError):
        framing.decode('42["x",' + "[" * 100_000)


@settings(PURE, max_examples=100)
@given(scope=st.one_of(st.sampled_from(["{env.HOME}", "{http.request.uri}", "a b", "x\r\ny"]), hostile_string))
def test_an_ipv6_scope_id_never_smuggles_anything_into_an_upstream(scope: str, canary: Canary) -> None:
    config = {
        "hostName": "a.example.test",
        "destinationIps": [f"fe80::1%{scope}"],
        "destinationPorts": [80],
        "privateKey": POOL[0].key,
        "publicKey": POOL[0].certificate,
    }
    for route in validate_route_set([config], NOW).routes:
        for upstream in route.upstreams:
            assert_clean(upstream, "upstream")


@pytest.mark.parametrize("user", ["al ice", " alice", "alice "])
def test_a_user_with_a_space_is_accepted_as_rfc_7617_allows(user: str) -> None:
    # Basic auth user-ids may hold any character but ':' and controls; a space is the operator's to choose.
    config = {
        "hostName": "a.example.test",
        "destinationIps": ["127.0.0.1"],
        "destinationPorts": [80],
        "privateKey": POOL[0].key,
        "publicKey": POOL[0].certificate,
        "authentication": {"type": "Basic", "user": user, "pass": "secret"},
    }
    [route] = validate_route_set([config], NOW).routes
    assert route.basic_auth is not None and route.basic_auth.user == user
