"""The status server: how an operator, a kubelet and Prometheus see the loop from outside.

- `/healthz`: 200 while the driver runs and any of its Caddies' admin APIs answers, else 503 (liveness).
- `/readyz`: 200 when the fleet is ready (`_not_ready`): with one Caddy, once a route set has been applied and
  Caddy still holds its marker `@id`; with several, when they all run the newest set, but for one that has not
  for less than FLEET_GRACE_S. Else 503 naming the Caddies and why.
- `/metrics`: Prometheus text format (prometheus-client; what it holds: `metrics`): routes, applies, failures,
  Coreflow, Caddy restarts; everything about a Caddy carries a `target` label (its admin address).
- `/status`: JSON with each Caddy's last apply; rejected hosts as Problem strings only, never a secret; the
  upstream addresses each Caddy currently counts failures against; the DNS names Caddies are found by; stale
  hosts and a held-back removal (`core.serving`). `coretraffic status` fetches and prints it (`status_text`).
- `/hosts`: JSON, each host of the newest route set with its state (served, stale, rejected, removal held back)
  and why, upstreams, auth on or off, certificate fingerprint and expiry (`core.host_list`); `?host=NAME`
  (repeated) and `?state=STATE` select entries. `coretraffic hosts` fetches and prints it (`hosts_text`).
- `POST /removal/confirm?id=ID`: an operator confirms the removal the mass-removal guard holds back as ID
  (`coretraffic confirm-removal`); 409 when that removal is not held back.

It only reads, through the protocols of `view`: each Caddy target's counters, marker and admin API, (through the
reconcilers' `on_result` observer, `ApplyStats`) each apply's result, each route source's own description and
metric readings, and each discovery's description. It changes what Caddy runs only when an operator confirms a
held-back removal, and then only to what the route source asked for. HTTP is asyncio's own server with a minimal
HTTP/1.1 responder (one request per connection): handlers run on the driver's event loop, so they read that
state without locks and await the admin APIs directly, and six small paths do not warrant a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    generate_latest,
)

from coretraffic import __version__
from coretraffic.core.gc_pause import collector_paused
from coretraffic.core.host_list import HOST_STATES, HostFilter
from coretraffic.core.text import printable
from coretraffic.errors import CaddyRejected, CaddyUnavailable, RemovalNotHeld, StatusError
from coretraffic.observe.certificate_expiry import certificates_document
from coretraffic.observe.listener_handover import MigrateReq, MigrateReqCollector
from coretraffic.observe.metrics import HOSTS_SHOWN, ApplyStats, DriverCollector, FailingUpstream
from coretraffic.observe.upstream_failures import UpstreamFailures
from coretraffic.observe.view import DriverView, TargetView
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
_FAILED_SHOWN = 20  # upstreams that failed since start, per Caddy in /status (all of them are in /metrics)
_ENDPOINTS = ("/healthz", "/readyz", "/metrics", "/status", "/hosts")
CONFIRM_REMOVAL_PATH = "/removal/confirm"  # POST ?id=: an operator confirms a held-back removal
# A client that goes away, is too slow, or sends something that is not a small HTTP/1.x request head.
_DROPPED = (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
T = TypeVar("T")


def _the_one(parts: Sequence[T]) -> T:
    # One source today; how /status shows several is for the change that brings them.
    (part,) = parts
    return part


class StatusServer:
    """Answers the four endpoints on `address` until closed. `tcp_migrate_req`: as read at start; `failures`: the
    upstream failures sampled since start (`upstream_failures`), if any."""

    def __init__(
        self,
        view: DriverView,
        stats: ApplyStats,
        tcp_migrate_req: MigrateReq = "unknown",
        failures: UpstreamFailures | None = None,
    ) -> None:
        self._view = view
        self._stats = stats
        self._tcp_migrate_req = tcp_migrate_req
        self._failures = failures
        self._registry = stats.registry
        self._collector = DriverCollector(view, stats, failures)
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
                method, path, query = await _read_request_head(reader)
            status, content_type, body = await self._respond(method, path, query)
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

    async def _respond(self, method: str, path: str, query: str) -> tuple[HTTPStatus, str, bytes]:
        if path == CONFIRM_REMOVAL_PATH:
            if method != "POST":
                return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"only POST\n"
            return self._confirm_removal(parse_qs(query).get("id", [""])[0])
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
            case "/hosts":
                return await self._hosts(parse_qs(query))
            case _:
                return _text(HTTPStatus.NOT_FOUND, "not found; try " + " ".join(_ENDPOINTS))

    async def _hosts(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, str, bytes]:
        """Built and serialised in a thread: at 100,000 hosts that takes about half a second, which the loop
        (applies, Coreflow's heartbeats, probes) should not wait for."""
        state = query.get("state", [""])[-1]
        if state and state not in HOST_STATES:
            expected = ", ".join(HOST_STATES)
            return _text(HTTPStatus.BAD_REQUEST, f"state must be one of {expected}, not {printable(state)}")
        build = self._view.serving.hosts(HostFilter(frozenset(host.lower() for host in query.get("host", ())), state))
        body = await asyncio.to_thread(_hosts_json, build)
        return HTTPStatus.OK, "application/json", body

    def _confirm_removal(self, ident: str) -> tuple[HTTPStatus, str, bytes]:
        """The one path that changes anything: it applies a removal the route source itself asked for and the
        mass-removal guard held back, named by its id (so that a confirmation is for what the operator saw)."""
        try:
            return _text(HTTPStatus.OK, self._view.serving.confirm_removal(ident))
        except RemovalNotHeld as exc:
            return _text(HTTPStatus.CONFLICT, str(exc))

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
            "certificates": certificates_document(self._stats.certificates, time.time()),
            "caddies": [
                self._caddy_document(state, problem, failing)
                for state, problem, failing in zip(states, problems, upstreams, strict=True)
            ],
            "discovery": [discovery.description() for discovery in self._view.discoveries],
            "source": _the_one(self._view.sources).description(),
            "serving": self._view.serving.description(),
            "kernel": {"tcp_migrate_req": self._tcp_migrate_req},  # the spawned Caddy's (the driver's) namespace
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
            # Known only in the namespace the driver shares with a Caddy it spawns; Caddy's API does not say.
            "tcp_migrate_req": self._tcp_migrate_req if target.restarts is not None else "unknown",
            "restarts": target.restarts,
            "loads": target.loads,
            "load_retries": target.retries,
            "heals": target.heals,
            "not_managed": list(target.foreign_parts),  # someone else's servers and apps, left alone
            "config_id": target.applied_marker,
            "routes": {
                "applied": stats.serving_hosts,
                "rejected": len({p.host for p in last.rejected}) if last else 0,
                # Of the rejected, those whose last good version is among the applied (`core.serving`).
                "stale": len(last.stale) if last else 0,
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
            "upstreams": {
                "failing": [u.document() for u in failing],
                "failed": self._failed_upstreams(target.name),
                "problem": upstreams_problem,
            },
        }

    def _failed_upstreams(self, target: str) -> list[dict[str, Any]]:
        """The upstreams that failed since the driver started, last failed first (at most _FAILED_SHOWN): unlike
        `failing`, this outlives Caddy's fail duration."""
        records = self._failures.of(target) if self._failures is not None else {}
        newest = sorted(records.items(), key=lambda item: -item[1].last_failure_at)[:_FAILED_SHOWN]
        return [
            {
                "address": address,
                "failures": record.failures,
                "last_failure": _iso(record.last_failure_at),
                "hosts": list(record.hosts[:HOSTS_SHOWN]),
                "hosts_total": len(record.hosts),
            }
            for address, record in newest
        ]


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


async def _read_request_head(reader: asyncio.StreamReader) -> tuple[str, str, str]:
    """The method, path and query of one HTTP/1.x request; its headers are read and ignored (a POST's body too:
    the one POST takes its argument in the query)."""
    method, target, version = (await reader.readuntil(b"\n")).decode("latin-1").split()
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not HTTP/1.x: {version!r}")
    for _ in range(_MAX_HEADER_LINES):
        if (await reader.readuntil(b"\n")).strip() == b"":
            parts = urlsplit(target)
            return method, parts.path, parts.query
    raise ValueError("too many header lines")


def _hosts_json(build: Callable[[], dict[str, Any]]) -> bytes:
    """`/hosts` built and serialised as compact JSON (a program reads it anyway; orjson: a tenth of json's time).
    100,000 entries would set off full collections, which stopped the event loop for 100 ms and more."""
    with collector_paused():
        return orjson.dumps(build()) + b"\n"


def _text(status: HTTPStatus, text: str) -> tuple[HTTPStatus, str, bytes]:
    return status, "text/plain; charset=utf-8", f"{text}\n".encode()


def _iso(timestamp: float) -> str | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
