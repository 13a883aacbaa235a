"""Unit tests of `coretraffic.caddyjson.withheld`: refused names a wildcard covers get a 503 of their own."""

from __future__ import annotations

import datetime

from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import HTTPS_SERVER, JSON, NOT_FOUND_ID, WITHHELD_ID, config_id, route_id
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.caddyjson.traffic import TrafficSettings
from coretraffic.caddyjson.withheld import with_withheld
from coretraffic.core.validate import Route, validate_route_set
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.golden import fake_hash

CA = DemoCA("withheld CA")


def rendered(*hosts: str) -> JSON:
    validation = validate_route_set([demo_route(CA, host, 8080) for host in hosts], datetime.datetime.now(datetime.UTC))
    routes: tuple[Route, ...] = validation.routes
    return render(routes, RenderSettings("1.2.3"), BaseConfig(), fake_hash)


def https_ids(config: JSON) -> list[str | None]:
    return [route.get("@id") for route in config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]]


def test_a_refused_name_under_a_wildcard_is_answered_before_the_wildcard_and_changes_the_marker() -> None:
    config = rendered("*.nc.test", "ec.nc.test")
    withheld = with_withheld(config, ["auth.nc.test", "elsewhere.test", "*.other.test", "deep.auth.nc.test"])
    assert https_ids(withheld) == [route_id("ec.nc.test"), WITHHELD_ID, route_id("*.nc.test"), NOT_FOUND_ID]
    block = withheld["apps"]["http"]["servers"][HTTPS_SERVER]["routes"][1]
    assert block["match"] == [{"host": ["auth.nc.test"]}]  # only what a wildcard of the set would take
    assert block["handle"][0]["status_code"] == 503
    assert config_id(withheld) != config_id(config)
    assert https_ids(config) == [route_id("ec.nc.test"), route_id("*.nc.test"), NOT_FOUND_ID]  # not changed


def test_without_a_wildcard_covering_them_refused_names_change_nothing() -> None:
    config = rendered("ec.nc.test", "*.other.test")
    assert with_withheld(config, ["auth.nc.test"]) is config
    assert with_withheld(config, []) is config


def test_the_withheld_route_keeps_the_port_guard_of_per_host_metrics() -> None:
    validation = validate_route_set(
        [demo_route(CA, host, 8080) for host in ("*.nc.test", "ec.nc.test")], datetime.datetime.now(datetime.UTC)
    )
    settings = RenderSettings("1.2.3", traffic=TrafficSettings(metrics="per_host"))
    config = with_withheld(render(validation.routes, settings, BaseConfig(), fake_hash), ["auth.nc.test"])
    routes = config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    (block,) = [r for r in routes if r.get("@id") == WITHHELD_ID]
    (wildcard,) = [r for r in routes if r.get("@id") == route_id("*.nc.test")]
    assert block["match"][0]["vars_regexp"] == wildcard["match"][0]["vars_regexp"]
