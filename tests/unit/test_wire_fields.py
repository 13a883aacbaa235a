"""Unit tests of `coretraffic.core.wire_fields` through validation: fields the wire format does not have are
ignored, reported with "did you mean", or, where they look like access control, fatal to the host."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from coretraffic.core.validate import Validation, validate_route_set
from coretraffic.testing.pki import DemoCA

NOW = datetime.datetime.now(datetime.UTC)
AUTH = {"type": "Basic", "user": "alice", "pass": "wonderland"}


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA("coretraffic wire-fields CA")


def config(ca: DemoCA, host: str, **extra: Any) -> dict[str, Any]:
    issued = ca.issue([host])
    return {
        "hostName": host,
        "destinationIps": ["10.0.0.1"],
        "destinationPorts": [8080],
        "privateKey": issued.private_key_pem,
        "publicKey": issued.certificate_pem,
        **extra,
    }


def validated(*configs: Any) -> Validation:
    return validate_route_set(list(configs), NOW)


@pytest.mark.parametrize(
    "name", ["authentification", "Authentication", "authentcation", "auth", "basicAuth", "password", "credentials"]
)
def test_a_name_that_looks_like_access_control_refuses_the_host_and_spares_the_others(ca: DemoCA, name: str) -> None:
    validation = validated(config(ca, "locked.example.test", **{name: AUTH}), config(ca, "good.example.test"))
    assert [r.host for r in validation.routes] == ["good.example.test"]
    (problem,) = validation.problems
    assert (problem.host, problem.field, problem.severity) == ("locked.example.test", name, "error")
    assert "did you mean 'authentication'?" in problem.message
    assert "wonderland" not in str(problem)


@pytest.mark.parametrize(
    ("name", "meant"),
    [("destinationIP", "destinationIps"), ("destinationports", "destinationPorts"), ("hostname", "hostName")],
)
def test_a_near_miss_of_another_field_is_a_warning_that_names_the_field_meant(
    ca: DemoCA, name: str, meant: str
) -> None:
    validation = validated(config(ca, "near.example.test", **{name: ["x"]}))
    assert [r.host for r in validation.routes] == ["near.example.test"]
    (warning,) = validation.warnings
    assert warning.field == name and f"did you mean '{meant}'?" in warning.message


def test_a_field_of_a_newer_coreflow_is_a_notice_and_the_host_is_served(ca: DemoCA) -> None:
    validation = validated(config(ca, "new.example.test", zone="eu-1", labels={"team": "a"}))
    assert [r.host for r in validation.routes] == ["new.example.test"]
    assert validation.errors == validation.warnings == ()
    assert [(n.field, n.severity) for n in validation.notices] == [("labels", "notice"), ("zone", "notice")]


def test_inside_authentication_a_typo_is_reported_and_a_missing_field_still_refuses(ca: DemoCA) -> None:
    typo = {"type": "Basic", "user": "alice", "Pass": "wonderland"}  # `pass` missing
    validation = validated(config(ca, "typo.example.test", authentication=typo))
    assert validation.routes == ()
    fields = {(p.field, p.severity) for p in validation.problems}
    assert ("authentication.Pass", "warning") in fields
    assert ("authentication.pass", "error") in fields


def test_a_hostile_field_name_is_quoted_printably_and_cut(ca: DemoCA) -> None:
    validation = validated(config(ca, "odd.example.test", **{"x\n{http.request.uri}" + "y" * 500: 1}))
    (notice,) = validation.notices
    assert "\n" not in notice.field and len(notice.field) < 50


def test_the_fast_path_finds_a_typo_in_a_config_it_has_seen_without_it(ca: DemoCA) -> None:
    """The content cache keys on the known fields only: a set that adds a typo to a cached config must still be
    refused, not found by content."""
    plain = config(ca, "cached.example.test")
    assert validated(plain).routes
    validation = validated({**plain, "authentification": AUTH})
    assert validation.routes == () and validation.errors
