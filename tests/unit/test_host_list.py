"""Unit tests of `coretraffic.core.host_list` (the `/hosts` document) and `observe.hosts_text` (its table)."""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from coretraffic.core.host_list import ArrivedSet, HostFilter, hosts_document, rejected_count
from coretraffic.core.serving import ServingPolicy
from coretraffic.core.validate import validate_route_set
from coretraffic.errors import RouteSetHeldBack
from coretraffic.observe.hosts_text import COLUMNS, REASON_WIDTH, hosts_text
from coretraffic.observe.status_text import _serving_lines
from coretraffic.testing.pki import DemoCA, demo_route

T0 = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
DELAY = datetime.timedelta(seconds=300)
PASSWORD = "pw-hunter2-canary"


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA("coretraffic host list CA")


def fingerprint(config: dict[str, Any]) -> str:
    leaf = x509.load_pem_x509_certificate(config["publicKey"].encode())
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


def document_of(policy: ServingPolicy, configs: list[Any], at: datetime.datetime, **only: Any) -> dict[str, Any]:
    decision = policy.decide(validate_route_set(configs, at), at)
    return hosts_document(ArrivedSet(1, at), decision, policy.held, at, HostFilter(**only))


def by_host(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["host"]: entry for entry in document["hosts"]}


@pytest.fixture(scope="module")
def configs(ca: DemoCA) -> dict[str, dict[str, Any]]:
    """A served host with auth on two upstreams, one without auth, one whose key is another certificate's."""
    authed = demo_route(ca, "b-auth.example.test", 9001)
    authed["destinationPorts"] = [9002, 9001]
    authed["authentication"] = {"type": "Basic", "user": "alice", "pass": PASSWORD}
    broken = demo_route(ca, "c-broken.example.test", 9003)
    broken["privateKey"] = ca.issue(["c-broken.example.test"]).private_key_pem
    return {"auth": authed, "plain": demo_route(ca, "a-plain.example.test", 9000), "broken": broken}


def test_each_host_with_its_state_upstreams_auth_and_certificate_sorted_by_name_and_no_secret(
    configs: dict[str, dict[str, Any]],
) -> None:
    duplicate = {**configs["plain"], "destinationPorts": [9999]}
    sent = [configs["auth"], configs["broken"], configs["plain"], duplicate]
    document = document_of(ServingPolicy(DELAY), sent, T0)

    assert document["set"] == {"number": 1, "received": "2026-12-07T12:00:00+00:00", "applied": True}
    assert document["held_back"] == ""
    assert [e["host"] for e in document["hosts"]] == [
        "a-plain.example.test",
        "b-auth.example.test",
        "c-broken.example.test",
    ]
    hosts = by_host(document)
    plain, authed, broken = hosts["a-plain.example.test"], hosts["b-auth.example.test"], hosts["c-broken.example.test"]
    assert (plain["state"], plain["auth"], plain["upstreams"]) == ("served", False, ["127.0.0.1:9000"])
    assert (authed["state"], authed["auth"]) == ("served", True)
    assert authed["upstreams"] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert authed["certificate"]["sha256"] == fingerprint(configs["auth"])
    assert authed["certificate"]["expired"] is False and 800 < authed["certificate"]["days_left"] < 830
    assert plain["warnings"] == ["hostName: config #4 ignored (duplicate of #3, which is served)"]
    assert broken["state"] == "rejected" and broken["auth"] is None and broken["certificate"] is None
    assert broken["reason"] == ["privateKey: does not match the certificate in publicKey"]
    assert rejected_count_of(sent) == 1

    text = json.dumps(document)
    for secret in (PASSWORD, configs["auth"]["privateKey"].splitlines()[1], configs["broken"]["privateKey"][40:80]):
        assert secret not in text


def rejected_count_of(configs: list[Any]) -> int:
    policy = ServingPolicy(DELAY)
    return rejected_count(policy.decide(validate_route_set(configs, T0), T0))


def test_a_stale_host_shows_the_version_that_serves_and_why_the_new_one_was_refused(
    ca: DemoCA, configs: dict[str, dict[str, Any]]
) -> None:
    policy = ServingPolicy(DELAY)
    document_of(policy, [configs["auth"], configs["plain"]], T0)
    rotated = {**configs["auth"], "privateKey": ca.issue(["b-auth.example.test"]).private_key_pem}
    later = T0 + datetime.timedelta(minutes=1)
    document_of(policy, [rotated, configs["plain"]], later)
    stale = by_host(document_of(policy, [rotated, configs["plain"]], later + datetime.timedelta(minutes=1)))
    entry = stale["b-auth.example.test"]
    assert entry["state"] == "stale" and entry["since"] == "2026-12-07T12:01:00+00:00"
    assert entry["reason"] == ["privateKey: does not match the certificate in publicKey"]
    assert entry["auth"] is True and entry["certificate"]["sha256"] == fingerprint(configs["auth"])
    assert entry["warnings"] == []  # its errors are its reason, not repeated
    assert stale["a-plain.example.test"]["state"] == "served"


def test_hosts_a_set_removes_while_the_guard_holds_them_back(ca: DemoCA) -> None:
    policy = ServingPolicy(DELAY)
    many = [demo_route(ca, f"h{i:02}.example.test", 9000 + i) for i in range(12)]
    document_of(policy, many, T0)
    document = document_of(policy, many[:1], T0)
    held = policy.held
    assert held is not None and document["held_back"] == held.reason()
    states = {entry["host"]: entry["state"] for entry in document["hosts"]}
    assert states.pop("h00.example.test") == "served"
    assert set(states.values()) == {"removal_held_back"} and len(states) == 11
    entry = by_host(document)["h05.example.test"]
    assert entry["since"] == "2026-12-07T12:00:00+00:00"
    assert f"coretraffic confirm-removal {held.ident}" in entry["reason"][0]


def test_before_any_set_and_while_a_whole_first_set_is_held_back(ca: DemoCA) -> None:
    assert hosts_document(None, None, None, T0) == {"set": None, "held_back": "", "hosts": []}
    served_before = frozenset(f"h{i:02}.example.test" for i in range(12))
    policy = ServingPolicy(DELAY, served_before)
    with pytest.raises(RouteSetHeldBack):
        policy.decide(validate_route_set([], T0), T0)
    document = hosts_document(ArrivedSet(1, T0), None, policy.held, T0)
    assert document["set"] is not None and document["set"]["applied"] is False
    assert document["hosts"] == [] and "nothing of this set is applied" in document["held_back"]


def test_a_config_named_by_no_host_name_is_listed_as_it_came(configs: dict[str, dict[str, Any]]) -> None:
    nameless = {key: value for key, value in configs["plain"].items() if key != "hostName"}
    spaced = {**configs["plain"], "hostName": "not a host"}
    hosts = by_host(document_of(ServingPolicy(DELAY), [configs["auth"], nameless, spaced], T0))
    assert hosts["#2"]["state"] == "rejected" and hosts["#2"]["reason"][0].startswith("hostName: ")
    assert hosts["not a host"]["reason"][0].startswith("hostName: must be a DNS name")


def test_only_the_hosts_and_the_state_asked_for(configs: dict[str, dict[str, Any]]) -> None:
    sent = list(configs.values())
    named = document_of(ServingPolicy(DELAY), sent, T0, hosts={"b-auth.example.test", "nowhere.example.test"})
    assert [e["host"] for e in named["hosts"]] == ["b-auth.example.test"]
    rejected = document_of(ServingPolicy(DELAY), sent, T0, state="rejected")
    assert [e["host"] for e in rejected["hosts"]] == ["c-broken.example.test"]
    assert document_of(ServingPolicy(DELAY), sent, T0, hosts={"c-broken.example.test"}, state="served")["hosts"] == []


# -- the table --------------------------------------------------------------------------------------------------


def test_the_table_one_host_a_line_aligned_under_its_header(ca: DemoCA, configs: dict[str, dict[str, Any]]) -> None:
    expired = ca.issue(
        ["d-old.example.test"], not_before=T0 - datetime.timedelta(days=30), not_after=T0 - datetime.timedelta(days=3)
    )
    old = {**demo_route(ca, "d-old.example.test", 9004), "publicKey": expired.certificate_pem}
    old["privateKey"] = expired.private_key_pem
    long_reason = {**configs["broken"], "hostName": "e-long.example.test", "destinationPorts": [0] * 30}
    document = document_of(ServingPolicy(DELAY), [*configs.values(), old, long_reason], T0)
    lines = hosts_text(document).splitlines()

    header, *rows, summary = lines
    assert header.split("  ")[0] == "HOST" and all(column in header for column in COLUMNS)
    for column in ("STATE", "AUTH", "UPSTREAMS", "CERT SHA-256", "EXPIRES", "REASON"):
        at = header.index(column)
        cells = [row for row in rows if len(row) > at]  # a served host's empty reason ends its line earlier
        assert len(cells) >= 2 and all(row[at - 2 : at] == "  " and row[at] != " " for row in cells), column
    assert [row.split()[:3] for row in rows] == [
        ["a-plain.example.test", "served", "off"],
        ["b-auth.example.test", "served", "on"],
        ["c-broken.example.test", "rejected", "-"],
        ["d-old.example.test", "served", "off"],
        ["e-long.example.test", "rejected", "-"],
    ]
    authed = rows[1]
    assert "127.0.0.1:9001,127.0.0.1:9002" in authed and fingerprint(configs["auth"])[:16] in authed
    assert "(8" in authed and " d)" in authed  # date and days left
    assert "EXPIRED 3 d ago" in rows[3] and "warning: publicKey: certificate expired at" in rows[3]
    assert "privateKey: does not match the certificate in publicKey" in rows[2]
    reason = rows[4][header.index("REASON") :]
    assert len(reason) == REASON_WIDTH and reason.endswith("...")
    assert summary == "5 hosts: 3 served, 2 rejected (route set 1, received 2026-12-07T12:00:00+00:00)"


def test_the_table_before_any_set() -> None:
    assert hosts_text(hosts_document(None, None, None, T0)) == "no route set has come since the driver started"


def test_the_table_of_a_whole_first_set_held_back() -> None:
    policy = ServingPolicy(DELAY, frozenset(f"h{i:02}.example.test" for i in range(12)))
    with pytest.raises(RouteSetHeldBack):
        policy.decide(validate_route_set([], T0), T0)
    held, applied = hosts_text(hosts_document(ArrivedSet(3, T0), None, policy.held, T0)).splitlines()
    assert held.startswith("HELD BACK: removal of 12 hosts of 12 held back since 2026-12-07T12:00:00+00:00")
    assert applied == "route set 3 (received 2026-12-07T12:00:00+00:00) is not applied"


@pytest.mark.parametrize(("stale", "rejected", "shown"), [(0, 0, False), (0, 2, True), (1, 0, True)])
def test_status_points_to_the_host_list_when_hosts_are_stale_or_rejected(
    stale: int, rejected: int, shown: bool
) -> None:
    serving: dict[str, Any] = {"removal_held_back": None, "stale": [], "rejected": rejected}
    if stale:
        version = {"certificate_expired": False, "certificate_sha256": "ab" * 32, "certificate_not_after": "2027"}
        serving["stale"] = [{"host": "h.test", "since": "x", "serving": version, "refused_because": ["a: b"]}]
    lines = list(_serving_lines(serving))
    pointer = (
        f"hosts:   {stale} stale, {rejected} rejected: `coretraffic hosts` lists every host with its state and why"
    )
    assert (pointer in lines) is shown
