"""The status server: how an operator, a kubelet and Prometheus see the loop from outside.

- `/healthz`: 200 while the driver runs and any of its Caddies' admin APIs answers, else 503 (liveness).
- `/readyz`: 200 when the fleet is ready (`_not_ready`): with one Caddy, once a route set has been applied and
  Caddy still holds its marker `@id`; with several, when they all run the newest set, but for one that has not
  for less than FLEET_GRACE_S. Else 503 naming the Caddies and why.
- `/metrics`: Prometheus text format (prometheus-client): routes, applies, failures, Coreflow, Caddy restarts;
  everything about a Caddy carries a `target` label (its admin address).
- `/status`: JSON with each Caddy's last apply; rejected hosts as Problem strings only, never a secret; the
  upstream addresses each Caddy currently counts failures against; the DNS names Caddies are found by.
  `coretraffic status` fetches and prints it.

It only reads, through the protocols of `view`: each Caddy target's counters, marker and admin API, (through the
reconcilers' `on_result` observer, `ApplyStats`) each apply's result, each route source's own description and
metric readings, and each discovery's description. It never changes what Caddy runs. HTTP is asyncio's own
server with a minimal HTTP/1.1 responder (GET/HEAD, one request per connection): handlers run on the driver's
event loop, so they read that state without locks and await the admin APIs directly, and four read-only paths do
not warrant a web framework.
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
# How long one Caddy of several may not run the newest set before the fleet is not ready: room for a load, a
# restarted Caddy's self-heal (within 2 s) and a replaced instance that was just found.
FLEET_GRACE_S = 10.0
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


@dataclass
class TargetStats:
    """One Caddy's applies, as its reconciler's `on_result` observer saw them."""

    outcomes: dict[str, int] = field(default_factory=lambda: {"applied": 0, "unchanged": 0, "failed": 0})
    last: ApplyResult | None = None
    last_at: float = 0.0
    last_success_at: float = 0.0
    serving_hosts: int = 0


class ApplyStats:
    """What each reconciler's `on_result` observer learns from each apply, kept for `/metrics` and `/status`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "coretraffic_apply_duration_seconds",
            "Time from taking a route set to Caddy's final answer (rendering, loads, isolating rejected hosts)",
            labelnames=["target"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.desired_hosts = 0
        self.targets: dict[str, TargetStats] = {}

    def observe(self, target: str, result: ApplyResult, validation: Validation) -> None:
        now = time.time()
        self.duration.labels(target).observe(result.duration_s)
        stats = self.targets.setdefault(target, TargetStats())
        stats.outcomes[result.outcome] += 1
        stats.last, stats.last_at = result, now
        self.desired_hosts = len({r.host for r in validation.routes} | {p.host for p in validation.errors})
        if result.outcome != "failed":  # a failed apply changed nothing: Caddy serves the previous set
            stats.last_success_at = now
            stats.serving_hosts = len(result.applied_hosts)

    def of(self, target: str) -> TargetStats:
        return self.targets.get(target) or TargetStats()

    def keep_only(self, targets: Iterable[str]) -> None:
        """Forget the Caddies that left the fleet: they are no longer shown."""
        for name in self.targets.keys() - set(targets):
            del self.targets[name]
            with contextlib.suppress(KeyError):
                self.duration.remove(name)


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
        # Read just before each scrape, per Caddy; one whose upstreams could not be read is left out.
        self.failing_upstreams: dict[str, list[FailingUpstream]] = {}

    def collect(self) -> Iterable[Metric]:
        stats, targets = self._stats, self._view.targets
        yield InfoMetricFamily("coretraffic_build", "The running coretraffic", {"version": __version__})
        yield GaugeMetricFamily("coretraffic_caddies", "Caddies in the fleet (given and discovered)", len(targets))
        yield GaugeMetricFamily(
            "coretraffic_routes_desired", "Hosts in the last route set received", stats.desired_hosts
        )
        for name, text, gauge in _CADDY_GAUGES:
            gauges = GaugeMetricFamily(name, text, labels=["target"])
            for target in targets:
                gauges.add_metric([target.name], gauge(target, stats.of(target.name)))
            yield gauges
        for name, text, counter in _CADDY_COUNTERS:
            counters = CounterMetricFamily(name, text, labels=["target"])
            for target in targets:
                value = counter(target, stats.of(target.name))
                if value is not None:
                    counters.add_metric([target.name], value)
            yield counters
        applies = CounterMetricFamily("coretraffic_applies", "Applies by outcome", labels=["target", "outcome"])
        failures = CounterMetricFamily(
            "coretraffic_apply_failures",
            "caddy_rejected: Caddy refused a whole route set (the previous one kept serving); "
            "caddy_unavailable: a load found Caddy unreachable, timing out or answering 5xx (retried)",
            labels=["target", "reason"],
        )
        config = InfoMetricFamily("coretraffic_config", "The config marker @id Caddy was last given", labels=["target"])
        for target in targets:
            of = stats.of(target.name)
            for outcome, count in of.outcomes.items():
                applies.add_metric([target.name, outcome], count)
            failures.add_metric([target.name, "caddy_rejected"], of.outcomes["failed"])
            failures.add_metric([target.name, "caddy_unavailable"], target.retries)
            if target.applied_marker is not None:
                config.add_metric([target.name], {"config_id": target.applied_marker})
        yield from (applies, failures, config)
        for source in self._view.sources:
            yield from map(_metric, source.readings())
        yield from _failing_upstream_metrics(self.failing_upstreams)


def _behind_s(target: TargetView) -> float:
    behind = target.behind_since
    return 0.0 if behind is None else time.monotonic() - behind


# Per Caddy, labelled `target`: name, help, value.
_CADDY_GAUGES: tuple[tuple[str, str, Callable[[TargetView, TargetStats], float]], ...] = (
    ("coretraffic_routes_applied", "Hosts Caddy was last told to serve", lambda _, of: of.serving_hosts),
    (
        "coretraffic_routes_rejected",
        "Hosts of the last route set left out (invalid, or refused by Caddy)",
        lambda _, of: len({p.host for p in of.last.rejected}) if of.last else 0,
    ),
    (
        "coretraffic_last_successful_apply_timestamp_seconds",
        "Unix time of the last apply after which Caddy ran the route set (0: none yet)",
        lambda _, of: of.last_success_at,
    ),
    (
        "coretraffic_caddy_behind_seconds",
        "Seconds for which the Caddy has not run the latest route set given to it (0: it runs it)",
        lambda target, _: _behind_s(target),
    ),
)
_CADDY_COUNTERS: tuple[tuple[str, str, Callable[[TargetView, TargetStats], float | None]], ...] = (
    ("coretraffic_caddy_loads", "Configs Caddy accepted through /load", lambda target, _: target.loads),
    (
        "coretraffic_caddy_heals",
        "Re-applies after Caddy lost the applied config (restarted, emptied or edited by hand)",
        lambda target, _: target.heals,
    ),
    (
        "coretraffic_caddy_restarts",
        "Times the spawned Caddy exited and was started again (spawned Caddies only)",
        lambda target, _: target.restarts,
    ),
)


def _failing_upstream_metrics(failing: dict[str, list[FailingUpstream]]) -> Iterable[Metric]:
    count = GaugeMetricFamily(
        "coretraffic_failing_upstreams",
        "Upstream addresses Caddy currently counts failures against (out of the selection for the fail duration)",
        labels=["target"],
    )
    by_host = GaugeMetricFamily(
        "coretraffic_host_failing_upstreams",
        f"Failing upstream addresses per host (per Caddy, the {_HOST_SERIES_MAX} hosts with most)",
        labels=["target", "host"],
    )
    for target, upstreams in failing.items():
        count.add_metric([target], len(upstreams))
        per_host = collections.Counter(host for upstream in upstreams for host in upstream.hosts)
        for host, hosts in sorted(per_host.items(), key=lambda item: (-item[1], item[0]))[:_HOST_SERIES_MAX]:
            by_host.add_metric([target, host], hosts)
    yield from (count, by_host)


def _the_one(parts: Sequence[T]) -> T:
    # One source today; how /status shows several is for the change that brings them.
    (part,) = parts
    return part


def _metric(reading: Reading) -> Metric:
    kind = GaugeMetricFamily if reading.kind == "gauge" else CounterMetricFamily
    return kind(reading.name, reading.help, value=reading.value)


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
                problem = await self._unhealthy()
                return _text(HTTPStatus.SERVICE_UNAVAILABLE if problem else HTTPStatus.OK, problem or "ok")
            case "/readyz":
                problem = _not_ready(await self._states(self._view.targets))
                return _text(
                    HTTPStatus.SERVICE_UNAVAILABLE if problem else HTTPStatus.OK, problem or self._ready_text()
                )
            case "/metrics":
                self._stats.keep_only(t.name for t in self._view.targets)  # before the registry reads the histogram
                self._collector.failing_upstreams = await self._readable_failing_upstreams()
                return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self._registry)
            case "/status":
                document = await self.status_document()
                return HTTPStatus.OK, "application/json", json.dumps(document, indent=2).encode() + b"\n"
            case _:
                return _text(HTTPStatus.NOT_FOUND, "not found; try " + " ".join(_ENDPOINTS))

    # -- what the endpoints say ----------------------------------------------------------------------------

    async def _unhealthy(self) -> str:
        """Why the driver is not healthy, or "": it is while any of its Caddies answers (restarting the driver
        would not bring back a Caddy on another machine), or while it has none yet to ask."""
        targets = self._view.targets
        problems = await asyncio.gather(*map(_caddy_problem, targets))
        if targets and all(problems):
            return "; ".join(
                f"{t.name}: {p}" if len(targets) > 1 else p for t, p in zip(targets, problems, strict=True)
            )
        return ""

    async def _states(self, targets: Sequence[TargetView]) -> list[_TargetState]:
        newest = max((t.running_set for t in targets), default=0)
        return list(await asyncio.gather(*(_target_state(t, newest) for t in targets)))

    def _ready_text(self) -> str:
        markers = sorted({t.applied_marker for t in self._view.targets if t.applied_marker})
        count = len(self._view.targets)
        caddies = "caddy runs" if count == 1 else f"{count} caddies run"
        return f"ready: {caddies} config {', '.join(markers)}"

    async def _readable_failing_upstreams(self) -> dict[str, list[FailingUpstream]]:
        targets = self._view.targets
        read = await asyncio.gather(*map(_failing_upstreams, targets))
        return {target.name: failing for target, (failing, problem) in zip(targets, read, strict=True) if not problem}

    async def status_document(self) -> dict[str, Any]:
        targets = self._view.targets
        # All at once: a frozen Caddy costs each question its timeout, and the answer should not wait for all three.
        states, problems, upstreams = await asyncio.gather(
            self._states(targets),
            asyncio.gather(*map(_caddy_problem, targets)),
            asyncio.gather(*map(_failing_upstreams, targets)),
        )
        not_ready = _not_ready(states)
        return {
            "version": __version__,
            "ready": not_ready == "",
            "not_ready_because": not_ready,
            "ready_grace_s": FLEET_GRACE_S,
            "routes": {"desired": self._stats.desired_hosts},
            "caddies": [
                self._caddy_document(state, problem, failing)
                for state, problem, failing in zip(states, problems, upstreams, strict=True)
            ],
            "discovery": [discovery.description() for discovery in self._view.discoveries],
            "source": _the_one(self._view.sources).description(),
            "kernel": {"tcp_migrate_req": self._tcp_migrate_req},  # the driver's own network namespace
        }

    def _caddy_document(
        self, state: _TargetState, caddy_problem: str, upstreams: tuple[list[FailingUpstream], str]
    ) -> dict[str, Any]:
        target = state.target
        stats = self._stats.of(target.name)
        last = stats.last
        failing, upstreams_problem = upstreams
        return {
            "admin": target.name,
            "healthy": not caddy_problem,
            "problem": caddy_problem,
            "runs_latest_set": state.problem == "",
            "not_running_it_because": state.problem,
            "behind_s": None if state.behind_s is None else round(state.behind_s, 1),
            "spawned": target.restarts is not None,
            "restarts": target.restarts,
            "loads": target.loads,
            "load_retries": target.retries,
            "heals": target.heals,
            "not_managed": list(target.foreign_parts),  # someone else's servers and apps, left alone
            "config_id": target.applied_marker,
            "routes": {
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
            "upstreams": {"failing": [u.document() for u in failing], "problem": upstreams_problem},
        }


@dataclass(frozen=True)
class _TargetState:
    target: TargetView
    problem: str  # why it does not run the fleet's newest set, "" when it does
    behind_s: float | None  # for how long it has not run it (None: it does, or since just now)


async def _target_state(target: TargetView, newest: int) -> _TargetState:
    """Whether `target` runs the newest set any Caddy of the fleet was loaded with, and if not, why."""
    behind = target.behind_since
    behind_s = None if behind is None else time.monotonic() - behind
    marker = target.applied_marker
    if marker is None:
        return _TargetState(target, _not_loaded_because(target, "no route set applied yet"), behind_s)
    if target.running_set < newest:
        return _TargetState(target, _not_loaded_because(target, "it does not run the latest route set"), behind_s)
    try:
        async with asyncio.timeout(CADDY_PROBE_TIMEOUT_S):
            runs = await target.has_id(marker)
    except (TimeoutError, CaddyUnavailable) as exc:
        return _TargetState(target, f"caddy admin API does not answer: {exc or 'timeout'}", behind_s)
    if not runs:
        return _TargetState(target, "caddy does not run the applied config (it is being re-applied)", behind_s)
    return _TargetState(target, "", None)


def _not_loaded_because(target: TargetView, head: str) -> str:
    last = target.last_result
    if target.unavailable_because:
        return f"{head}: {target.unavailable_because}"
    if last is not None and last.outcome == "failed":
        return f"{head}: Caddy rejected it: {last.caddy_answer}"
    return head


def _not_ready(states: Sequence[_TargetState]) -> str:
    """Why the fleet is not ready, or "": ready when at least one Caddy runs the newest route set any of them was
    loaded with and every other one does too, or has not for less than FLEET_GRACE_S (it is being loaded, healed
    after a restart, or has just been found)."""
    if not states:
        return "no caddy in the fleet (none found yet)"
    if len(states) == 1:
        return states[0].problem
    if all(s.problem for s in states):
        lagging = list(states)
    else:  # a Caddy found behind only now (its self-heal has not noticed yet) is in its grace period too
        lagging = [s for s in states if s.problem and s.behind_s is not None and s.behind_s >= FLEET_GRACE_S]
    return "; ".join(f"{s.target.name}: {s.problem}" for s in lagging)


async def _caddy_problem(target: TargetView) -> str:
    """Why this Caddy's admin API is not healthy, or "" when it answers."""
    try:
        async with asyncio.timeout(CADDY_PROBE_TIMEOUT_S):
            await target.ping()
    except TimeoutError:
        return f"caddy admin API did not answer within {CADDY_PROBE_TIMEOUT_S:g} s"
    except (CaddyUnavailable, CaddyRejected) as exc:
        return str(exc)
    return ""


async def _failing_upstreams(target: TargetView) -> tuple[list[FailingUpstream], str]:
    """The upstream addresses this Caddy currently counts failures against (passive health: out of the selection
    for the fail duration), or why they could not be read."""
    try:
        async with asyncio.timeout(CADDY_PROBE_TIMEOUT_S):
            listed = await target.upstreams()
    except (TimeoutError, CaddyUnavailable, CaddyRejected) as exc:
        return [], str(exc) or "timeout"
    failing = [
        FailingUpstream(str(u.get("address")), int(u.get("fails") or 0), tuple(u.get("hosts", ())))
        for u in listed
        if u.get("fails")
    ]
    return sorted(failing, key=lambda u: u.address), ""


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
    source = doc["source"]
    if "coreflow" in source:
        state = "connected" if source["connected"] else "NOT CONNECTED"
        yield f"source:  coreflow {source['coreflow']} {state}, {source['reconnects']} reconnects"
    else:
        yield f"source:  routes file {source['routes_file']}"
        problem = source.get("problem")
        if problem:
            yield f"  PROBLEM since {problem['since']}: {problem['error']}; {problem['effect']}"
    for discovery in doc["discovery"]:
        found = ", ".join(discovery["instances"]) or "none"
        yield f"discovery: {discovery['dns']}: {found}" + (
            f"; PROBLEM: {discovery['problem']}" if discovery["problem"] else ""
        )
        yield from (f"  not driven: {line}" for line in discovery["not_driven"])
    migrate = doc["kernel"]["tcp_migrate_req"]
    effect = "" if migrate == "on" else " (a reload resets the connections queued on the old listener)"
    yield f"kernel:  net.ipv4.tcp_migrate_req {migrate}{effect}"
    yield f"routes:  {doc['routes']['desired']} desired"
    for caddy in doc["caddies"]:
        yield from _caddy_lines(caddy)


def _caddy_lines(caddy: dict[str, Any]) -> Iterator[str]:
    health = "answering" if caddy["healthy"] else f"NOT ANSWERING: {caddy['problem']}"
    spawned = f"spawned, {caddy['restarts']} restarts" if caddy["spawned"] else "external"
    current = "runs the latest set" if caddy["runs_latest_set"] else f"BEHIND: {caddy['not_running_it_because']}"
    yield f"caddy {caddy['admin']}: {health}; {current}"
    yield f"  {spawned}; {caddy['loads']} loads, {caddy['load_retries']} retried, {caddy['heals']} heals"
    if caddy["not_managed"]:
        yield f"  not coretraffic's, left alone: {', '.join(caddy['not_managed'])}"
    upstreams = caddy["upstreams"]
    if upstreams["problem"]:
        yield f"  upstreams: not read: {upstreams['problem']}"
    elif upstreams["failing"]:
        failing = ", ".join(map(_failing_upstream_text, upstreams["failing"]))
        yield f"  upstreams: {len(upstreams['failing'])} failing: {failing}"
    routes = caddy["routes"]
    yield f"  routes: {routes['applied']} applied, {routes['rejected']} rejected"
    yield f"  config: {caddy['config_id'] or '-'} (last successful apply: {caddy['last_successful_apply'] or 'never'})"
    last = caddy["last_apply"]
    if last is None:
        yield "  last apply: none yet"
        return
    yield (
        f"  last apply: {last['outcome']} at {last['at']} in {last['duration_s']} s, "
        f"{counted(last['hosts_served'], 'host')} served; caddy: {last['caddy_answer']}"
    )
    for title, problems in (("rejected", last["rejected"]), ("warnings", last["warnings"])):
        if problems:
            yield f"  {title}:"
            yield from (f"    {problem}" for problem in problems)


def _failing_upstream_text(upstream: dict[str, Any]) -> str:
    """One entry of `/status`'s `upstreams.failing` as `coretraffic status` prints it."""
    hosts = ", ".join(upstream["hosts"])
    more = upstream["hosts_total"] - len(upstream["hosts"])
    hosts += f" and {more} more" if more > 0 else ""
    return f"{upstream['address']} ({counted(upstream['fails'], 'fail')}{'; ' + hosts if hosts else ''})"
