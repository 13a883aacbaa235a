"""Caddy's access log as coretraffic renders it (`--access-log`), against a real Caddy whose output the spawned-
Caddy forwarder reads: JSON entries on the access logger, `errors` keeping only 5xx answers, skipped hosts left
out, and each entry once (Caddy's default log leaves the access logger to its own log)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from coretraffic import __version__
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.layout import ACCESS_LOG, ACCESS_LOGGER
from coretraffic.caddyjson.render import RenderSettings, serialise, with_admin_listen
from coretraffic.caddyjson.traffic import AccessLog, TrafficSettings
from coretraffic.testing.pki import DemoCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import renderer_for, validated
from tests.support.dataplane import https_get
from tests.support.ports import Ports
from tests.support.upstreams import refused_port
from tests.support.waiting import wait_until

LOGGED, SKIPPED, DEAD = "logged.example.test", "skipped.example.test", "dead.example.test"


def access_entries(lines: Sequence[str]) -> list[dict[str, Any]]:
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("logger") == ACCESS_LOGGER:
            entries.append(entry)
    return entries


async def load(
    access_log: AccessLog,
    caddy: CaddyProcess,
    admin: CaddyAdmin,
    ports: Ports,
    configs: list[dict[str, Any]],
    sample: int = 1,
    first: int | None = None,
) -> None:
    """`first`: the sampler's entries kept per second in place of the rendered 100 (the render's own value is
    checked without a Caddy); fewer let a slow machine's request rate still exceed what sampling keeps."""
    traffic = TrafficSettings(access_log=access_log, access_log_skip_hosts=(SKIPPED,), access_log_sample=sample)
    settings = RenderSettings(
        version=__version__, http_port=ports.http, https_port=ports.https, listen_host="127.0.0.1", traffic=traffic
    )
    config = renderer_for(settings)(validated(configs).routes)
    if first is not None:
        config["logging"]["logs"][ACCESS_LOG]["sampling"]["first"] = first
    await admin.load(serialise(with_admin_listen(config, caddy.admin_address.listen)))


@pytest.fixture
def configs(ca: DemoCA, upstream: DemoUpstream) -> list[dict[str, Any]]:
    return [
        demo_route(ca, LOGGED, upstream.port),
        demo_route(ca, SKIPPED, upstream.port),
        demo_route(ca, DEAD, refused_port()),
    ]


async def test_all_logs_each_request_once_but_for_skipped_hosts(
    ca: DemoCA, caddy: CaddyProcess, admin: CaddyAdmin, ports: Ports, configs: list[dict[str, Any]]
) -> None:
    await load("all", caddy, admin, ports, configs)
    for host in (SKIPPED, LOGGED, DEAD):
        await https_get(ca, ports.https, host, "/seen?q=1")

    async def dead_logged() -> bool:
        return any(e["request"]["host"] == DEAD for e in access_entries(caddy.recent_log))

    await wait_until(dead_logged, 10, "the last request's entry")
    entries = access_entries(caddy.recent_log)
    assert [(e["request"]["host"], e["status"], e["level"]) for e in entries] == [
        (LOGGED, 200, "info"),
        (DEAD, 502, "error"),
    ]
    assert entries[0]["request"]["uri"] == "/seen?q=1" and entries[0]["msg"] == "handled request"


async def test_errors_logs_only_5xx_answers(
    ca: DemoCA, caddy: CaddyProcess, admin: CaddyAdmin, ports: Ports, configs: list[dict[str, Any]]
) -> None:
    await load("errors", caddy, admin, ports, configs)
    for host in (LOGGED, DEAD, LOGGED):
        await https_get(ca, ports.https, host)

    async def dead_logged() -> bool:
        return bool(access_entries(caddy.recent_log))

    await wait_until(dead_logged, 10, "the 502's entry")
    (entry,) = access_entries(caddy.recent_log)
    assert (entry["request"]["host"], entry["status"]) == (DEAD, 502)


FIRST = 10  # entries the sampler keeps per second: 1,000 requests must take 90 s before the bound reaches them


async def test_sampling_keeps_the_first_entries_of_each_second_then_one_in_n(
    ca: DemoCA,
    caddy: CaddyProcess,
    admin: CaddyAdmin,
    ports: Ports,
    configs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,000 requests on 8 connections: with one in 1,000 after the first 10 entries of each second, at most 10
    per second they took (and one more), where every request would be 1,000."""
    caplog.set_level(logging.INFO, logger="coretraffic.caddy")
    await load("all", caddy, admin, ports, configs, sample=1000, first=FIRST)
    context = ssl.create_default_context(cadata=ca.certificate_pem)
    started = time.monotonic()
    async with httpx.AsyncClient(verify=context, timeout=10) as client:

        async def requests(count: int) -> None:
            for _ in range(count):
                response = await client.get(
                    f"https://127.0.0.1:{ports.https}/", headers={"Host": LOGGED}, extensions={"sni_hostname": LOGGED}
                )
                assert response.status_code == 200

        await asyncio.gather(*(requests(125) for _ in range(8)))
    seconds = math.ceil(time.monotonic() - started)
    await https_get(ca, ports.https, DEAD)  # a last entry to wait for (its own message: its own sample count)

    def entries() -> list[dict[str, Any]]:
        return access_entries([record.getMessage() for record in caplog.records])

    async def dead_logged() -> bool:
        return any(e["request"]["host"] == DEAD for e in entries())

    await wait_until(dead_logged, 10, "the last request's entry")
    logged = sum(e["request"]["host"] == LOGGED for e in entries())
    bound = FIRST * (seconds + 1) + 1  # the requests may straddle one more second boundary than they took
    assert bound < 1000, f"{seconds} s for 1,000 requests: too slow to tell sampling from none"
    assert FIRST <= logged <= bound, (logged, seconds)
