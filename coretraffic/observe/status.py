"""The status server: how an operator, a kubelet and Prometheus see the loop from outside.

- `/healthz`: 200 while the driver runs and Caddy's admin API answers, else 503 (liveness).
- `/readyz`: 200 once a route set has been applied and Caddy still holds its marker `@id`, else 503 (readiness).
- `/metrics`: Prometheus text format (prometheus-client): routes, applies, failures, Coreflow, Caddy restarts.
- `/status`: JSON with the last apply's result; rejected hosts as Problem strings only, never a secret; the
  upstream addresses Caddy currently counts failures against.
  `coretraffic status` fetches and prints it.

It only reads, through the protocols of `view`: the Caddy target's counters, marker and admin API, (through the
reconciler's `on_result` observer, `ApplyStats`) each apply's result, and each route source's own description and
metric readings. It never changes what Caddy runs. HTTP is asyncio's own server with a minimal HTTP/1.1 responder
(GET/HEAD, one request per connection): handlers run on the driver's event loop, so they read that state without
locks and await Caddy's admin API directly, and four read-only paths do not warrant a web framework.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from coretraffic import __version__
from coretraffic.core.readings import Reading
from coretraffic.core.text import counted
from coretraffic.core.validate import Validation
from coretraffic.errors import CaddyRejected, CaddyUnavailable, StatusError
from coretraffic.observe.listener_handover import MigrateReq, MigrateReqCollector
from coretraffic.observe.view import DriverView, TargetView
from coretraffic.reconcile.reconciler import ApplyResult
from coretraffic.settings import host_port

log = logging.getLogger("coretraffic.status")

# Kubelet probes time out after a few seconds: answer "Caddy does not answer" well before that.
CADDY_PROBE_TIMEOUT_S = 2.0
# A client that sends no complete request head in this time is dropped; only GET heads are expected.
_REQUEST_TIMEOUT_S = 5.0
_MAX_HEADER_LINES = 100
# Loads take 2 ms (10 routes) to 2.4 s (10,000 routes) on a quiet box, minutes when Caddy struggles.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_ENDPOINTS = ("/healthz", "/readyz", "/metrics", "/status")
_HOSTS_SHOWN = 10  # per failing upstream address in /status; all of them count
_HOST_SERIES_MAX = 100  # hosts with a failing upstream labelled in /metrics: bounded, whatever fails
# A client that goes away, is too slow, or sends something that is not a small HTTP/1.x request head.
_DROPPED = (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
T = TypeVar("T")


class ApplyStats:
    """What the reconciler's `on_result` observer learns from each apply, kept for `/metrics` and `/status`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "coretraffic_apply_duration_seconds",
            "Time from taking a route set to Caddy's final answer (rendering, loads, isolating rejected hosts)",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.outcomes: dict[str, int] = {"applied": 0, "unchanged": 0, "failed": 0}
        self.last: ApplyResult | None = None
        self.last_at = 0.0
        self.last_success_at = 0.0
        self.desired_hosts = 0
        self.serving_hosts = 0

    def observe(self, result: ApplyResult, validation: Validation) -> None:
        now = time.time()
        self.duration.observe(result.duration_s)
        self.outcomes[result.outcome] += 1
        self.last, self.last_at = result, now
        self.desired_hosts = len({r.host for r in validation.routes} | {p.host for p in validation.errors})
        if result.outcome != "failed":  # a failed apply changed nothing: Caddy serves the previous set
            self.last_success_at = now
            self.serving_hosts = len(result.applied_hosts)


@dataclass(frozen=True)
class FailingUpstream:
    address: str  # ip:port as Caddy dials it
    fails: int  # failures Caddy currently counts against it
    hosts: tuple[str, ...]  # the hosts of the applied set that use it

    def document(self) -> dict[str, Any]:
        shown = list(self.hosts[:_HOSTS_SHOWN])
        return {"address": self.address, "fails": self.fails, "hosts": shown, "hosts_total": len(self.hosts)}


class _DriverCollector:
    """Metrics read from the running parts at scrape time, so the parts never depend on Prometheus."""

    def __init__(self, view: DriverView, stats: ApplyStats) -> None:
        self._view = view
        self._stats = stats
        self.failing_upstreams: list[FailingUpstream] | None = None  # read just before each scrape; None: not read

    def collect(self) -> Iterable[Metric]:
        stats, target = self._stats, _the_one(self._view.targets)
        yield InfoMetricFamily("coretraffic_build", "The running coretraffic", {"version": __version__})
        yield _gauge("coretraffic_routes_desired", "Hosts in the last route set received", stats.desired_hosts)
        yield _gauge("coretraffic_routes_applied", "Hosts Caddy was last told to serve", stats.serving_hosts)
        yield _gauge(
            "coretraffic_routes_rejected",
            "Hosts of the last route set left out (invalid, or refused by Caddy)",
            len({p.host for p in stats.last.rejected}) if stats.last else 0,
        )
        yield _gauge(
            "coretraffic_last_successful_apply_timestamp_seconds",
            "Unix time of the last apply after which Caddy ran the route set (0: none yet)",
            stats.last_success_at,
        )
        applies = CounterMetricFamily("coretraffic_applies", "Applies by outcome", labels=["outcome"])
        for outcome, count in stats.outcomes.items():
            applies.add_metric([outcome], count)
        yield applies
        failures = CounterMetricFamily(
            "coretraffic_apply_failures",
            "caddy_rejected: Caddy refused a whole route set (the previous one kept serving); "
            "caddy_unavailable: a load found Caddy unreachable, timing out or answering 5xx (retried)",
            labels=["reason"],
        )
        failures.add_metric(["caddy_rejected"], stats.outcomes["failed"])
        failures.add_metric(["caddy_unavailable"], target.retries)
        yield failures
        yield _counter("coretraffic_caddy_loads", "Configs Caddy accepted through /load", target.loads)
        yield _counter(
            "coretraffic_caddy_heals",
            "Re-applies after Caddy lost the applied config (restarted, emptied or edited by hand)",
            target.heals,
        )
        if target.restarts is not None:
            yield _counter(
                "coretraffic_caddy_restarts", "Times the spawned Caddy exited and was started again", target.restarts
            )
        for source in self._view.sources:
            yield from map(_metric, source.readings())
        if self.failing_upstreams is not None:
            yield from _failing_upstream_metrics(self.failing_upstreams)
        marker = target.applied_marker
        if marker is not None:
            yield InfoMetricFamily(
                "coretraffic_config", "The config marker @id Caddy was last given", {"config_id": marker}
            )


def _failing_upstream_metrics(failing: list[FailingUpstream]) -> Iterable[Metric]:
    yield _gauge(
        "coretraffic_failing_upstreams",
        "Upstream addresses Caddy currently counts failures against (out of the selection for the fail duration)",
        len(failing),
    )
    per_host = collections.Counter(host for upstream in failing for host in upstream.hosts)
    by_host = GaugeMetricFamily(
        "coretraffic_host_failing_upstreams",
        f"Failing upstream addresses per host (the {_HOST_SERIES_MAX} hosts with most)",
        labels=["host"],
    )
    for host, count in sorted(per_host.items(), key=lambda item: (-item[1], item[0]))[:_HOST_SERIES_MAX]:
        by_host.add_metric([host], count)
    yield by_host


def _the_one(parts: Sequence[T]) -> T:
    # One Caddy and one source today; how /status and /metrics show several is for the change that brings them.
    (part,) = parts
    return part


def _metric(reading: Reading) -> Metric:
    return (_gauge if reading.kind == "gauge" else _counter)(reading.name, reading.help, reading.value)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


class StatusServer:
    """Answers the four endpoints on `address` until closed. `tcp_migrate_req`: as read at start."""

    def __init__(self, view: DriverView, stats: ApplyStats, tcp_migrate_req: MigrateReq = "unknown") -> None:
        self._view = view
        self._stats = stats
        self._tcp_migrate_req = tcp_migrate_req
        self._registry = stats.registry
        self._collector = _DriverCollector(view, stats)
        self._registry.register(self._collector)
        self._registry.register(MigrateReqCollector(tcp_migrate_req))
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self._registry.register(standard)
        self._server: asyncio.Server | None = None

    async def listen(self, address: str) -> None:
        host, port = host_port(address)
        try:
            self._server = await asyncio.start_server(self._serve_connection, host, port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's own text repeats the address
            raise StatusError(f"status server cannot listen on {address}: {reason}") from None
        log.info("status server listening on http://%s/ (%s)", address, " ".join(_ENDPOINTS))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                method, path = await _read_request_head(reader)
            status, content_type, body = await self._respond(method, path)
            head = (
                f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except _DROPPED as exc:
            log.debug("status request dropped: %r", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, method: str, path: str) -> tuple[HTTPStatus, str, bytes]:
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        match path:
            case "/healthz":
                problem = await self._caddy_problem()
                return _text(HTTPStatus.SERVICE_UNAVAILABLE if problem else HTTPStatus.OK, problem or "ok")
            case "/readyz":
                problem = await self._not_ready()
                ready = f"ready: caddy runs config {self._target.applied_marker}"
                return _text(HTTPStatus.SERVICE_UNAVAILABLE if problem else HTTPStatus.OK, problem or ready)
            case "/metrics":
                failing, problem = await self._failing_upstreams()
                self._collector.failing_upstreams = None if problem else failing
                return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self._registry)
            case "/status":
                document = await self.status_document()
                return HTTPStatus.OK, "application/json", json.dumps(document, indent=2).encode() + b"\n"
            case _:
                return _text(HTTPStatus.NOT_FOUND, "not found; try " + " ".join(_ENDPOINTS))

    # -- what the endpoints say ----------------------------------------------------------------------------

    @property
    def _target(self) -> TargetView:
        return _the_one(self._view.targets)

    async def _caddy_problem(self) -> str:
        """Why Caddy's admin API is not healthy, or "" when it answers."""
        try:
            async with asyncio.timeout(CADDY_PROBE_TIMEOUT_S):
                await self._target.ping()
        except TimeoutError:
            return f"caddy admin API did not answer within {CADDY_PROBE_TIMEOUT_S:g} s"
        except (CaddyUnavailable, CaddyRejected) as exc:
            return str(exc)
        return ""

    async def _not_ready(self) -> str:
        """Why the driver is not ready, or "" when Caddy runs the applied route set."""
        target = self._target
        marker = target.applied_marker
        if marker is None:
            return "no route set applied yet"
        try:
            async with asyncio.timeout(CADDY_PROBE_TIMEOUT_S):
                runs = await target.has_id(marker)
        except (TimeoutError, CaddyUnavailable) as exc:
            return f"caddy admin API does not answer: {exc or 'timeout'}"
        return "" if runs else "caddy does not run the applied config (it is being re-applied)"

    async def _failing_upstreams(self) -> tuple[list[FailingUpstream], str]:
        """The upstream addresses Caddy currently counts failures against (passive health: out of the selection
        for the fail duration), or why they could not be read."""
        try:
            async with asyncio.timeout(CADDY_PROBE_TIMEOUT_S):
                listed = await self._target.upstreams()
        except (TimeoutError, CaddyUnavailable, CaddyRejected) as exc:
            return [], str(exc) or "timeout"
        failing = [
            FailingUpstream(str(u.get("address")), int(u.get("fails") or 0), tuple(u.get("hosts", ())))
            for u in listed
            if u.get("fails")
        ]
        return sorted(failing, key=lambda u: u.address), ""

    async def status_document(self) -> dict[str, Any]:
        stats, target = self._stats, self._target
        caddy_problem, not_ready, (failing, upstreams_problem) = await asyncio.gather(
            self._caddy_problem(), self._not_ready(), self._failing_upstreams()
        )
        caddy: dict[str, Any] = {
            "admin": target.admin_listen,
            "healthy": not caddy_problem,
            "problem": caddy_problem,
            "spawned": target.restarts is not None,
            "restarts": target.restarts,
            "loads": target.loads,
            "load_retries": target.retries,
            "heals": target.heals,
            "not_managed": list(target.foreign_parts),  # someone else's servers and apps, left alone
        }
        last = stats.last
        return {
            "version": __version__,
            "ready": not_ready == "",
            "not_ready_because": not_ready,
            "config_id": target.applied_marker,
            "routes": {
                "desired": stats.desired_hosts,
                "applied": stats.serving_hosts,
                "rejected": len({p.host for p in last.rejected}) if last else 0,
            },
            "last_successful_apply": _iso(stats.last_success_at),
            "last_apply": None
            if last is None
            else {
                "at": _iso(stats.last_at),
                "outcome": last.outcome,
                "duration_s": round(last.duration_s, 3),
                "hosts_served": len(last.applied_hosts),
                "caddy_answer": last.caddy_answer,
                "rejected": [str(p) for p in last.rejected],
                "warnings": [str(p) for p in last.warnings],
            },
            "caddy": caddy,
            "upstreams": {"failing": [u.document() for u in failing], "problem": upstreams_problem},
            "source": _the_one(self._view.sources).description(),
            "kernel": {"tcp_migrate_req": self._tcp_migrate_req},
        }


async def _read_request_head(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of one HTTP/1.x request; its headers are read and ignored."""
    method, target, version = (await reader.readuntil(b"\n")).decode("latin-1").split()
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not HTTP/1.x: {version!r}")
    for _ in range(_MAX_HEADER_LINES):
        if (await reader.readuntil(b"\n")).strip() == b"":
            return method, urlsplit(target).path
    raise ValueError("too many header lines")


def _text(status: HTTPStatus, text: str) -> tuple[HTTPStatus, str, bytes]:
    return status, "text/plain; charset=utf-8", f"{text}\n".encode()


def _iso(timestamp: float) -> str | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


# -- `coretraffic status` --------------------------------------------------------------------------------------


def fetch_status(address: str) -> dict[str, Any]:
    """The `/status` document of the driver whose status server listens on `address`."""
    host, port = host_port(address)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # listening on all addresses: ask over loopback
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/status"
    try:
        response = httpx.get(url, timeout=10.0)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        raise StatusError(f"no status from {url}: {exc}") from None
    return document


def status_text(document: dict[str, Any]) -> str:
    """`/status` for a person reading a terminal."""
    return "\n".join(_status_lines(document))


def _status_lines(doc: dict[str, Any]) -> Iterator[str]:
    ready = "ready" if doc["ready"] else f"NOT READY: {doc['not_ready_because']}"
    yield f"coretraffic {doc['version']}: {ready}"
    caddy = doc["caddy"]
    health = "answering" if caddy["healthy"] else f"NOT ANSWERING: {caddy['problem']}"
    spawned = f"spawned, {caddy['restarts']} restarts" if caddy["spawned"] else "external"
    yield (
        f"caddy:   admin {caddy['admin']} {health}; {spawned}; {caddy['loads']} loads, "
        f"{caddy['load_retries']} retried, {caddy['heals']} heals"
    )
    if caddy["not_managed"]:
        yield f"caddy:   not coretraffic's, left alone: {', '.join(caddy['not_managed'])}"
    source = doc["source"]
    if "coreflow" in source:
        state = "connected" if source["connected"] else "NOT CONNECTED"
        yield f"source:  coreflow {source['coreflow']} {state}, {source['reconnects']} reconnects"
    else:
        yield f"source:  routes file {source['routes_file']}"
        problem = source.get("problem")
        if problem:
            yield f"  PROBLEM since {problem['since']}: {problem['error']}; {problem['effect']}"
    upstreams = doc["upstreams"]
    if upstreams["problem"]:
        yield f"upstreams: not read: {upstreams['problem']}"
    elif upstreams["failing"]:
        failing = ", ".join(map(_failing_upstream_text, upstreams["failing"]))
        yield f"upstreams: {len(upstreams['failing'])} failing: {failing}"
    migrate = doc["kernel"]["tcp_migrate_req"]
    effect = "" if migrate == "on" else " (a reload resets the connections queued on the old listener)"
    yield f"kernel:  net.ipv4.tcp_migrate_req {migrate}{effect}"
    routes = doc["routes"]
    yield f"routes:  {routes['desired']} desired, {routes['applied']} applied, {routes['rejected']} rejected"
    yield f"config:  {doc['config_id'] or '-'} (last successful apply: {doc['last_successful_apply'] or 'never'})"
    last = doc["last_apply"]
    if last is None:
        yield "last apply: none yet"
        return
    yield (
        f"last apply: {last['outcome']} at {last['at']} in {last['duration_s']} s, "
        f"{counted(last['hosts_served'], 'host')} served; caddy: {last['caddy_answer']}"
    )
    for title, problems in (("rejected", last["rejected"]), ("warnings", last["warnings"])):
        if problems:
            yield f"{title}:"
            yield from (f"  {problem}" for problem in problems)


def _failing_upstream_text(upstream: dict[str, Any]) -> str:
    """One entry of `/status`'s `upstreams.failing` as `coretraffic status` prints it."""
    hosts = ", ".join(upstream["hosts"])
    more = upstream["hosts_total"] - len(upstream["hosts"])
    hosts += f" and {more} more" if more > 0 else ""
    return f"{upstream['address']} ({counted(upstream['fails'], 'fail')}{'; ' + hosts if hosts else ''})"
