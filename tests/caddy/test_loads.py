"""Loads against a real Caddy: no OCSP work inside a load, and a load that outlasts the client's timeout is not
posted again while Caddy still applies it.

Certificates come from `PublicLikeCA`, whose leaves name a local OCSP responder (`coretraffic.testing.ocsp`) that
counts the connections it gets. A responder that holds its connections also keeps Caddy inside a load with
stapling on, which is how a load is made to outlast a short client timeout on cue; Caddy is SIGSTOPped while the
timeout fires, and always SIGCONTed in a `finally`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from coretraffic.caddy.admin import CaddyAdmin, LoadTimeout
from coretraffic.caddy.process import CaddyProcess
from coretraffic.caddyjson.layout import JSON, config_id
from coretraffic.caddyjson.render import RenderSettings
from coretraffic.core.validate import Route, Validation
from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.testing.ocsp import Responder
from coretraffic.testing.pki import PublicLikeCA, demo_route
from coretraffic.testing.upstream import DemoUpstream
from tests.support.caddy import renderer_for, running, validated
from tests.support.dataplane import https_get
from tests.support.waiting import wait_until

WAIT = 30.0


class CountingTransport(httpx.AsyncBaseTransport):
    """The admin client's own transport, recording every request it sends (method, path, body)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, request.content))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def loads_of(self, marker: str) -> int:
        return sum(1 for method, path, body in self.sent if (method, path) == ("POST", "/load") and marker in str(body))

    def asked_for(self, marker: str) -> bool:
        return ("GET", f"/id/{marker}", b"") in self.sent


def public_like_set(ca: PublicLikeCA, upstream: DemoUpstream, prefix: str, count: int) -> Validation:
    """`count` hosts, EC and RSA leaves in turn, issued by `ca` (their AIA names its responder)."""
    configs: list[dict[str, Any]] = [
        demo_route(ca, f"{prefix}{i}.example.test", upstream.port, key_type="rsa" if i % 2 else "ec")
        for i in range(count)
    ]
    validation = validated(configs)
    assert not validation.problems, validation.problems
    return validation


def marker_of(renderer: Callable[[Sequence[Route]], JSON], validation: Validation) -> str:
    marker = config_id(renderer(validation.routes))
    assert marker is not None
    return marker


async def until(condition: Callable[[], bool], what: str) -> None:
    async def check() -> bool:
        return condition()

    await wait_until(check, WAIT, what)


@asynccontextmanager
async def stapling_caddy_with_a_short_load_timeout(
    caddy: CaddyProcess, render_settings: RenderSettings
) -> AsyncIterator[tuple[Reconciler, CountingTransport, Callable[[Sequence[Route]], JSON]]]:
    socket_path = caddy.admin_address.location
    counting = CountingTransport(httpx.AsyncHTTPTransport(uds=socket_path))
    admin = CaddyAdmin(caddy.admin_address, counting, load_timeout=LoadTimeout(base_s=0.5, per_mb_s=0.0))
    renderer = renderer_for(dataclasses.replace(render_settings, ocsp_stapling=True))
    try:
        async with running(Reconciler(admin, renderer, heal_interval=3600)) as reconciler:
            yield reconciler, counting, renderer
    finally:
        await admin.aclose()


@asynccontextmanager
async def stopped(caddy: CaddyProcess) -> AsyncIterator[None]:
    assert caddy.pid is not None
    os.kill(caddy.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(caddy.pid, signal.SIGCONT)


# -- OCSP --------------------------------------------------------------------------------------------------------


async def test_a_load_fetches_no_ocsp_and_the_public_like_hosts_serve(
    reconciler: Reconciler, upstream: DemoUpstream, render_settings: RenderSettings
) -> None:
    async with Responder(answer=False) as responder:
        ca = responder.issuing_ca()
        validation = public_like_set(ca, upstream, "ca", 6)
        result = await asyncio.wait_for(reconciler.submit(validation), WAIT)
        assert result.ok, result.summary()
        for route in validation.routes:
            response = await https_get(ca, render_settings.https_port, route.host)
            assert response.status_code == 200, route.host
        assert responder.connections == 0


async def test_with_stapling_on_a_load_fetches_ocsp_for_its_certificates(
    admin: CaddyAdmin, upstream: DemoUpstream, render_settings: RenderSettings
) -> None:
    async with Responder(answer=True) as responder:
        ca = responder.issuing_ca()
        renderer = renderer_for(dataclasses.replace(render_settings, ocsp_stapling=True))
        async with running(Reconciler(admin, renderer)) as reconciler:
            result = await asyncio.wait_for(reconciler.submit(public_like_set(ca, upstream, "ca", 4)), WAIT)
        assert result.ok, result.summary()
        assert responder.connections >= 4


# -- one load at a time ------------------------------------------------------------------------------------------


async def test_a_load_that_outlasts_the_client_timeout_is_posted_once_and_lands(
    caddy: CaddyProcess, admin: CaddyAdmin, upstream: DemoUpstream, render_settings: RenderSettings
) -> None:
    async with (
        Responder(answer=False) as responder,
        stapling_caddy_with_a_short_load_timeout(caddy, render_settings) as (reconciler, counting, renderer),
    ):
        ca = responder.issuing_ca()
        validation = public_like_set(ca, upstream, "slow", 2)
        marker = marker_of(renderer, validation)
        applied = reconciler.submit_nowait(validation)
        await until(lambda: responder.connections > 0, "Caddy to be inside the load, fetching OCSP")
        async with stopped(caddy):
            await until(lambda: counting.asked_for(marker), "the client to time out and ask whether the load landed")
        responder.answer_from_now_on()
        result = await asyncio.wait_for(applied, WAIT)
        assert result.outcome == "applied", result.summary()
        assert "Caddy runs its marker" in result.caddy_answer
        assert counting.loads_of(marker) == 1
        assert reconciler.applied_marker == marker
        assert await admin.has_id(marker)


async def test_a_newer_set_sent_while_a_load_is_in_doubt_is_loaded_after_it_and_wins(
    caddy: CaddyProcess, admin: CaddyAdmin, upstream: DemoUpstream, render_settings: RenderSettings
) -> None:
    async with (
        Responder(answer=False) as responder,
        stapling_caddy_with_a_short_load_timeout(caddy, render_settings) as (reconciler, counting, renderer),
    ):
        ca = responder.issuing_ca()
        first, newer = public_like_set(ca, upstream, "first", 2), public_like_set(ca, upstream, "newer", 2)
        first_marker, newer_marker = marker_of(renderer, first), marker_of(renderer, newer)
        first_applied = reconciler.submit_nowait(first)
        await until(lambda: responder.connections > 0, "Caddy to be inside the first load, fetching OCSP")
        async with stopped(caddy):
            await until(lambda: counting.asked_for(first_marker), "the client to ask whether the first load landed")
            newer_applied = reconciler.submit_nowait(newer)
        responder.answer_from_now_on()
        results = await asyncio.wait_for(asyncio.gather(first_applied, newer_applied), WAIT)
        assert [r.outcome for r in results] == ["applied", "applied"], [r.summary() for r in results]
        assert (counting.loads_of(first_marker), counting.loads_of(newer_marker)) == (1, 1)
        assert reconciler.applied_marker == newer_marker
        assert await admin.has_id(newer_marker)
        assert not await admin.has_id(first_marker)
