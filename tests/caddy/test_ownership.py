"""`run` leaves alone what is not coretraffic's: servers and apps someone else put into Caddy survive every load.

The pure rules of `coretraffic.caddyjson.ownership` first, then the reconciler against a real Caddy: a server from a
Caddyfile-like config answers real HTTP requests before, between and after coretraffic's loads.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.ownership import foreign_parts, keep_foreign
from coretraffic.caddyjson.render import RenderSettings, render, serialise
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import validated
from tests.support.dataplane import serves
from tests.support.ports import Ports, free_port
from tests.support.waiting import wait_until

SETTINGS = RenderSettings(version="1.0.0")


def operator_server(port: int, body: str = "operator") -> dict[str, Any]:
    return {"listen": [f"127.0.0.1:{port}"], "routes": [{"handle": [{"handler": "static_response", "body": body}]}]}


def rendered(base: dict[str, Any] | None = None) -> dict[str, Any]:
    return render([], SETTINGS, BaseConfig(base or {}), BcryptHasher(4))


# -- the rules ---------------------------------------------------------------------------------------------------


def test_a_config_coretraffic_never_rendered_is_all_foreign_but_its_http_and_tls() -> None:
    running = {
        "apps": {
            "http": {"servers": {"srv0": operator_server(443)}, "http_port": 80},
            "tls": {"automation": {}},
            "pki": {"certificate_authorities": {}},
        }
    }
    assert foreign_parts(running) == {"server srv0": operator_server(443), "app pki": {"certificate_authorities": {}}}
    assert foreign_parts(None) == {} and foreign_parts({"admin": {}}) == {}


def test_parts_the_base_config_put_there_are_not_foreign() -> None:
    base = {"apps": {"http": {"servers": {"kept": operator_server(9000)}}, "pki": {}}}
    running = copy.deepcopy(rendered(base))
    running["apps"]["http"]["servers"]["by_hand"] = operator_server(9100)
    assert foreign_parts(running) == {"server by_hand": operator_server(9100)}


def test_foreign_parts_are_carried_into_a_rendering_without_changing_it() -> None:
    desired = rendered({"apps": {"http": {"servers": {"mine": operator_server(9000, "base")}}}})
    before = copy.deepcopy(desired)
    foreign = {"server mine": operator_server(9000, "foreign"), "server other": operator_server(9100), "app pki": {}}
    merged, left_out = keep_foreign(desired, foreign)
    assert desired == before
    servers = merged["apps"]["http"]["servers"]
    assert servers["mine"] == operator_server(9000, "base")  # the base config's version of a name wins
    assert servers["other"] == operator_server(9100) and merged["apps"]["pki"] == {}
    assert left_out == {}


def test_a_foreign_server_on_a_port_of_the_rendered_config_is_left_out_and_said_why() -> None:
    squatter = operator_server(SETTINGS.https_port)
    merged, left_out = keep_foreign(rendered(), {"server squatter": squatter})
    assert "squatter" not in merged["apps"]["http"]["servers"]
    assert left_out == {"server squatter": f"listens on port {SETTINGS.https_port}, which the rendered config uses"}


# -- the reconciler against a real Caddy -----------------------------------------------------------------------------


async def answer(port: int) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{port}/")).text
    except httpx.TransportError:
        return None


async def load_foreign(admin: CaddyAdmin, caddy: CaddyProcess, servers: dict[str, Any]) -> None:
    """A config as an operator's own Caddyfile would give: no coretraffic in it."""
    config = {"admin": {"listen": caddy.admin_address.listen}, "apps": {"http": {"servers": servers}}}
    await admin.load(json.dumps(config).encode())


async def test_an_operators_server_keeps_serving_through_every_load(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin, caddy: CaddyProcess, ports: Ports
) -> None:
    port = free_port()
    await load_foreign(admin, caddy, {"srv0": operator_server(port)})
    assert await answer(port) == "operator"
    for hosts in (["a.example.test"], ["a.example.test", "b.example.test"], ["b.example.test"]):
        result = await reconciler.submit(validated([demo_route(ca, h, upstream.port) for h in hosts]))
        assert result.outcome == "applied", result.summary()
        assert await serves(ca, ports.https, hosts[-1])
        assert await answer(port) == "operator"
    assert reconciler.foreign_parts == ("server srv0",)


async def test_a_server_added_by_hand_is_kept_from_the_next_check_on(
    ca: DemoCA, upstream: DemoUpstream, reconciler: Reconciler, admin: CaddyAdmin, caddy: CaddyProcess, ports: Ports
) -> None:
    assert (await reconciler.submit(validated([demo_route(ca, "a.example.test", upstream.port)]))).ok
    port = free_port()
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=caddy.admin_address.location)) as c:
        response = await c.put("http://localhost/config/apps/http/servers/by_hand", json=operator_server(port))
        assert response.status_code == 200, response.text

    async def healed() -> bool:
        return reconciler.heals >= 1 and reconciler.last_result is not None and not reconciler._busy()

    await wait_until(healed, 10, "the hand edit to be noticed")
    result = await reconciler.submit(validated([demo_route(ca, "b.example.test", upstream.port)]))
    assert result.outcome == "applied"
    assert await serves(ca, ports.https, "b.example.test")
    assert await answer(port) == "operator"


async def test_a_server_dropped_from_the_base_config_goes(
    ca: DemoCA, upstream: DemoUpstream, admin: CaddyAdmin, render_settings: RenderSettings
) -> None:
    port = free_port()
    configs = [demo_route(ca, "a.example.test", upstream.port)]

    async def apply_with(base: dict[str, Any]) -> None:
        def renderer(routes: Sequence[Route]) -> dict[str, Any]:
            return render(routes, render_settings, BaseConfig(base), BcryptHasher(4))

        reconciler = Reconciler(admin, renderer)  # a restarted driver: nothing remembered
        task = asyncio.create_task(reconciler.run())
        try:
            assert (await reconciler.submit(validated(configs))).outcome == "applied"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    await apply_with({"apps": {"http": {"servers": {"retired": operator_server(port)}}}})
    assert await answer(port) == "operator"
    await apply_with({})
    assert await answer(port) is None


async def test_a_foreign_server_on_coretraffics_port_gives_way_with_a_warning(
    ca: DemoCA,
    upstream: DemoUpstream,
    reconciler: Reconciler,
    admin: CaddyAdmin,
    caddy: CaddyProcess,
    ports: Ports,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await load_foreign(admin, caddy, {"squatter": operator_server(ports.https, "squatter")})
    with caplog.at_level(logging.WARNING, logger="coretraffic.reconciler"):
        result = await reconciler.submit(validated([demo_route(ca, "a.example.test", upstream.port)]))
    assert result.outcome == "applied", result.summary()
    assert await serves(ca, ports.https, "a.example.test")
    assert any("server squatter" in r.getMessage() and str(ports.https) in r.getMessage() for r in caplog.records)
    assert serialise(await admin.get_config()).count(b"squatter") == 0
