"""The reconciler's timing rules, fast, against a fake admin API: coalescing, isolation, self-heal, loads in doubt.

`FakeCaddy` is a small in-memory stand-in for Caddy's admin API behind `CaddyAdmin` (through
`httpx.MockTransport`): it keeps the config last loaded, answers `GET /config/` with an ETag and `GET /id/<id>` by
scanning for the `@id`, and can be told to reject loads (HTTP 400 with a Caddy-like error text), to be
unavailable, to come back empty as a restarted Caddy does, to hold loads and `@id` checks until released, or to
lose its answers to loads (applied or not), which a real Caddy cannot be made to do on cue. It is a fake beside
the real-Caddy tests (`test_reconciler.py` and others), which stay: they show what Caddy does; these show what the
reconciler decides, in milliseconds.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddyjson.base import BaseConfig
from coretraffic.caddyjson.layout import HTTPS_SERVER, JSON
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.core.certificates import Certificate
from coretraffic.core.validate import Problem, Route, Validation, validate_route_set
from coretraffic.reconcile.reconciler import ApplyResult, Reconciler
from coretraffic.settings import AdminAddress
from coretraffic.sources.coreflow.handler import reply_for
from coretraffic.testing.pki import DemoCA, demo_route
from tests.support.caddy import running as reconciler_running
from tests.support.golden import fake_hash
from tests.support.waiting import wait_until

ADMIN = AdminAddress("unix", "/fake/admin.sock")
HEAL_INTERVAL = 0.01
WAIT = 5.0  # seconds any awaited condition may take before the test fails
Rejection = Callable[[Any], str | None]  # a loaded config -> Caddy's error text, or None to accept it


class FakeCaddy:
    """Caddy's admin API, as far as the reconciler uses it, in memory."""

    def __init__(self) -> None:
        self.config: Any = None  # what GET /config/ answers; null: a Caddy running no config
        self.attempts: list[Any] = []  # every config posted to /load
        self.loaded: list[Any] = []  # those it accepted
        self.id_answers: list[tuple[str, int]] = []  # every `@id` asked for, with the HTTP status answered
        self.reject: Rejection = lambda config: None
        self.unavailable = False
        self.refused = 0  # requests refused while unavailable
        self.loads_held = self.ids_held = 0
        self.answers_lost = 0  # the next loads time out at the client ...
        self.lost_loads_land = True  # ... after Caddy applied them (or, False: did not)
        self._loads = asyncio.Event()  # cleared: accepted loads wait before answering
        self._ids = asyncio.Event()  # cleared: `@id` checks wait before answering
        self._loads.set()
        self._ids.set()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def hold_loads(self) -> None:
        self._loads.clear()

    def release_loads(self) -> None:
        self._loads.set()

    def hold_ids(self) -> None:
        self._ids.clear()

    def release_ids(self) -> None:
        self._ids.set()

    def restart_empty(self) -> None:
        self.config = None

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if self.unavailable:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if request.method == "POST" and path == "/load":
            return await self._load(json.loads(request.content), request)
        if request.method == "GET" and path.startswith("/config/"):
            node = self.config
            for key in filter(None, path.removeprefix("/config/").split("/")):
                node = node.get(key) if isinstance(node, dict) else None
            body = json.dumps(node).encode()
            return httpx.Response(200, content=body, headers={"ETag": f'"{path} {hashlib.sha256(body).hexdigest()}"'})
        if request.method == "GET" and path.startswith("/id/"):
            return await self._id(path.removeprefix("/id/"))
        return _error(404, f"{request.method} {path}: not found")

    async def _load(self, config: Any, request: httpx.Request) -> httpx.Response:
        self.attempts.append(config)
        if self.answers_lost:
            self.answers_lost -= 1
            if self.lost_loads_land:
                self.config = config
                self.loaded.append(config)
            raise httpx.ReadTimeout("timed out", request=request)
        problem = self.reject(config)
        if problem is not None:
            return _error(400, problem)
        if config.get("admin", {}).get("listen") != ADMIN.listen:
            # A load naming another admin address (none: localhost:2019) moves the admin API away from here.
            self.unavailable = True
        self.config = config  # Caddy runs the new config before it answers the request that loaded it
        self.loaded.append(config)
        self.loads_held += 1
        await self._loads.wait()
        self.loads_held -= 1
        return httpx.Response(200)

    async def _id(self, object_id: str) -> httpx.Response:
        self.ids_held += 1
        await self._ids.wait()
        self.ids_held -= 1
        found = object_id in _ids_in(self.config)
        self.id_answers.append((object_id, 200 if found else 404))
        return httpx.Response(200, json={}) if found else _error(404, f"unknown object ID '{object_id}'")


def _error(status: int, text: str) -> httpx.Response:
    return httpx.Response(status, json={"error": text})


def _ids_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["@id"]} if isinstance(node.get("@id"), str) else set()
        return own.union(*(_ids_in(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_ids_in(item) for item in node))
    return set()


def route(host: str) -> Route:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    pem = f"certificate of {host}"  # never parsed: the fake does not look at certificates
    return Route(host, ("10.0.0.1:8080",), pem, f"key of {host}", Certificate("00" * 32, (host,), now, now, pem))


def route_set(*hosts: str) -> Validation:
    return Validation(tuple(route(host) for host in hosts), ())


def hosts_in(config: Any) -> list[str]:
    routes = config["apps"]["http"]["servers"][HTTPS_SERVER]["routes"]
    return [host for entry in routes for matcher in entry.get("match", []) for host in matcher["host"]]


def render_routes(routes: Sequence[Route]) -> JSON:
    return render(routes, RenderSettings(version="test"), BaseConfig(), fake_hash)


def reject_certificates_of(*bad_hosts: str) -> Rejection:
    """Caddy's answer to a key that does not match its certificate: it names the `load_pem` entry by index."""

    def reject(config: Any) -> str | None:
        for index, entry in enumerate(config["apps"]["tls"]["certificates"]["load_pem"]):
            if entry["tags"][0] in bad_hosts:
                return (
                    "loading config: loading new config: loading tls app module: provision tls: loading "
                    f"certificates: PEM pair {index}: tls: private key does not match public key"
                )
        return None

    return reject


async def until(condition: Callable[[], bool], what: str) -> None:
    async def check() -> bool:
        return condition()

    await wait_until(check, WAIT, what)


async def settled(*futures: asyncio.Future[ApplyResult]) -> list[ApplyResult]:
    return await asyncio.wait_for(asyncio.gather(*futures), WAIT)


@pytest.fixture
def fake() -> FakeCaddy:
    return FakeCaddy()


@asynccontextmanager
async def running(fake: FakeCaddy) -> AsyncIterator[Reconciler]:
    admin = CaddyAdmin(ADMIN, transport=fake.transport())
    try:
        async with reconciler_running(Reconciler(admin, render_routes, heal_interval=HEAL_INTERVAL)) as reconciler:
            yield reconciler
    finally:
        await admin.aclose()


# -- coalescing --------------------------------------------------------------------------------------------------


async def test_a_burst_while_a_load_is_held_costs_two_loads_and_the_newest_set_wins(fake: FakeCaddy) -> None:
    async with running(fake) as reconciler:
        fake.hold_loads()
        first = reconciler.submit_nowait(route_set("first.example.test"))
        await until(lambda: fake.loads_held == 1, "the first set's load to reach Caddy")
        burst = [reconciler.submit_nowait(route_set(f"set{i}.example.test")) for i in range(50)]
        fake.release_loads()
        results = await settled(*burst)
        assert (await first).applied_hosts == ("first.example.test",)
    assert len(fake.loaded) == 2
    assert hosts_in(fake.config) == ["set49.example.test"]
    assert all(result is results[-1] for result in results)  # every submitter learns the same apply
    assert results[-1].outcome == "applied" and results[-1].applied_hosts == ("set49.example.test",)


async def test_every_load_names_the_admin_address_of_the_caddy_it_is_for(fake: FakeCaddy) -> None:
    async with running(fake) as reconciler:
        await reconciler.submit(route_set("a.example.test"))
        await reconciler.submit(route_set("b.example.test"))
    assert [config["admin"] for config in fake.loaded] == [{"listen": ADMIN.listen}] * 2
    assert "admin" not in render_routes([route("a.example.test")])  # the address is the loader's, not render's


async def test_an_unavailable_caddy_is_retried_and_a_newer_set_takes_over(fake: FakeCaddy) -> None:
    fake.unavailable = True
    async with running(fake) as reconciler:
        first = reconciler.submit_nowait(route_set("first.example.test"))
        await until(lambda: reconciler.retries >= 2, "the first set to be retried")
        second = reconciler.submit_nowait(route_set("second.example.test"))
        refused = fake.refused
        # The next refused attempt finds the newer set waiting: the first set's retries end there.
        await until(lambda: fake.refused > refused, "another attempt while Caddy is unavailable")
        fake.unavailable = False
        results = await settled(first, second)
    assert results[0] is results[1]
    assert results[1].applied_hosts == ("second.example.test",)
    assert [hosts_in(config) for config in fake.loaded] == [["second.example.test"]]


# -- per-host isolation ------------------------------------------------------------------------------------------


async def test_each_pem_pair_caddy_names_drops_exactly_that_host_and_the_rest_is_applied(fake: FakeCaddy) -> None:
    hosts = [f"{name}.example.test" for name in "abcde"]
    fake.reject = reject_certificates_of("c.example.test", "e.example.test")
    async with running(fake) as reconciler:
        result = await reconciler.submit(route_set(*hosts))
    assert result.outcome == "applied"
    assert result.applied_hosts == ("a.example.test", "b.example.test", "d.example.test")
    assert [(p.host, p.field) for p in result.rejected] == [
        ("c.example.test", "publicKey"),
        ("e.example.test", "publicKey"),
    ]
    assert all("Caddy rejected it: " in p.message and "PEM pair" in p.message for p in result.rejected)
    assert len(fake.attempts) == 3  # one round per rejected host, then the load that Caddy took
    assert [hosts_in(config) for config in fake.loaded] == [["a.example.test", "b.example.test", "d.example.test"]]


async def test_an_error_that_names_no_host_fails_the_apply_and_loads_nothing_more(fake: FakeCaddy) -> None:
    error = "loading config: loading new config: http app module: start: listening on :7999: address already in use"
    async with running(fake) as reconciler:
        await reconciler.submit(route_set("keep.example.test"))
        fake.reject = lambda config: error
        result = await reconciler.submit(route_set("keep.example.test", "new.example.test"))
        assert (result.outcome, result.applied_hosts, result.caddy_answer) == ("failed", (), error)
        checks = len(fake.id_answers)
        await until(lambda: len(fake.id_answers) > checks, "a heal check after the failed apply")
    assert len(fake.attempts) == 2  # the failed set was tried once, not retried or cut down
    assert reconciler.loads == 1 and reconciler.heals == 0
    assert hosts_in(fake.config) == ["keep.example.test"]  # the last good config keeps serving


# -- self-heal ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answered", ["while the newer set is being loaded", "after the newer set was applied"])
async def test_a_heal_check_answered_after_a_newer_set_was_taken_does_not_put_the_older_back(
    fake: FakeCaddy, answered: str
) -> None:
    during = answered.startswith("while")
    async with running(fake) as reconciler:
        await reconciler.submit(route_set("old.example.test"))
        fake.hold_ids()
        await until(lambda: fake.ids_held == 1, "a heal check of the old set to reach Caddy")
        if during:
            fake.hold_loads()
        newer = reconciler.submit_nowait(route_set("new.example.test"))
        if during:
            await until(lambda: fake.loads_held == 1, "the newer set's load to reach Caddy")
        else:
            await settled(newer)
        # Caddy runs the newer config by now, so the held check answers 404 for the old set's marker.
        checks = len(fake.id_answers)
        fake.release_ids()
        await until(lambda: len(fake.id_answers) > checks, "the held heal check to be answered")
        fake.release_loads()
        assert (await settled(newer))[0].applied_hosts == ("new.example.test",)
        # One check at a time: once the heal loop has checked again, it has judged the stale answer.
        await until(lambda: len(fake.id_answers) > checks + 1, "the next heal check")
    assert fake.id_answers[checks][1] == 404
    assert reconciler.heals == 0
    assert [hosts_in(config) for config in fake.loaded] == [["old.example.test"], ["new.example.test"]]


async def test_a_caddy_that_restarts_empty_gets_the_applied_set_again(fake: FakeCaddy) -> None:
    async with running(fake) as reconciler:
        await reconciler.submit(route_set("a.example.test", "b.example.test"))
        fake.restart_empty()
        await until(lambda: len(fake.loaded) == 2, "the set to be applied again")
        await reconciler.wait_idle()
        assert reconciler.heals == 1
    assert fake.loaded[1] == fake.loaded[0]
    assert fake.config == fake.loaded[0]


# -- a load whose answer never came ------------------------------------------------------------------------------


async def test_a_load_that_timed_out_but_landed_is_recorded_as_applied_and_not_posted_again(fake: FakeCaddy) -> None:
    fake.answers_lost = 1
    async with running(fake) as reconciler:
        result = await reconciler.submit(route_set("a.example.test"))
    assert (result.outcome, result.applied_hosts) == ("applied", ("a.example.test",))
    assert "Caddy runs its marker" in result.caddy_answer
    assert len(fake.attempts) == 1
    assert reconciler.applied_marker is not None
    assert (reconciler.applied_marker, 200) in fake.id_answers


async def test_a_load_that_timed_out_and_did_not_land_is_posted_again(fake: FakeCaddy) -> None:
    fake.answers_lost = 1
    fake.lost_loads_land = False
    async with running(fake) as reconciler:
        result = await reconciler.submit(route_set("a.example.test"))
    assert (result.outcome, result.caddy_answer) == ("applied", "HTTP 200")
    assert len(fake.attempts) == 2
    assert [hosts_in(config) for config in fake.loaded] == [["a.example.test"]]
    assert (reconciler.applied_marker, 404) in fake.id_answers


async def test_a_newer_set_waits_for_the_load_in_doubt_and_then_wins(fake: FakeCaddy) -> None:
    async with running(fake) as reconciler:
        fake.answers_lost = 1
        fake.hold_ids()  # Caddy still busy with the load: the question whether it landed waits
        first = reconciler.submit_nowait(route_set("first.example.test"))
        await until(lambda: fake.ids_held == 1, "the check whether the first set landed")
        newer = reconciler.submit_nowait(route_set("newer.example.test"))
        fake.release_ids()
        first_result, newer_result = await settled(first, newer)
    assert first_result.applied_hosts == ("first.example.test",)
    assert newer_result.applied_hosts == ("newer.example.test",)
    assert [hosts_in(config) for config in fake.attempts] == [["first.example.test"], ["newer.example.test"]]
    assert hosts_in(fake.config) == ["newer.example.test"]


def test_summaries_and_replies_count_one_host_in_the_singular() -> None:
    one = ApplyResult("applied", ("a.example.test",), (), (), 0.1, "HTTP 200")
    assert one.summary().startswith("applied: 1 host served, 0 rejected, 0 warnings, ")
    rejected = ApplyResult("applied", ("a.example.test",), (Problem("b.example.test", "publicKey", "bad"),), (), 0, "")
    assert reply_for(rejected)["errorText"].startswith("1 host served, 1 rejected; b.example.test: publicKey: bad")


async def test_a_duplicate_host_is_served_and_the_reply_does_not_call_it_rejected(fake: FakeCaddy) -> None:
    """The reply once said "rejected: ec.nc.test" while ec.nc.test was served by its first config."""
    ca = DemoCA("duplicate test CA")
    validation = validate_route_set(
        [demo_route(ca, "ec.nc.test", 8080), demo_route(ca, "other.nc.test", 8081), demo_route(ca, "EC.nc.test", 8082)],
        datetime.datetime.now(datetime.UTC),
    )
    async with running(fake) as reconciler:
        result = await reconciler.submit(validation)
    assert result.applied_hosts == ("ec.nc.test", "other.nc.test")
    assert hosts_in(fake.config) == ["ec.nc.test", "other.nc.test"]
    assert reply_for(result) == {"status": "ok", "errorText": ""}
    assert result.summary().startswith("applied: 2 hosts served, 0 rejected, 1 warning, ")
    assert [str(p) for p in result.warnings] == [
        "ec.nc.test: hostName: config #3 ignored (duplicate of #1, which is served)"
    ]
