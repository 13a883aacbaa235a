"""`coretraffic status` and `confirm-removal`: a running driver's status server asked, its answer printed for a
person (`coretraffic hosts` asks it here too, and prints with `hosts_text`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from coretraffic.caddy.admin import why_unreachable
from coretraffic.core.text import counted
from coretraffic.errors import RemovalNotHeld, StatusError
from coretraffic.settings import host_port


def _url(address: str, path: str) -> str:
    host, port = host_port(address)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # listening on all addresses: ask over loopback
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def confirm_removal(address: str, ident: str) -> str:
    """Confirm the held-back removal `ident` at the driver whose status server listens on `address`; its answer.
    Raises `RemovalNotHeld` when the driver holds back no such removal."""
    url = _url(address, "/removal/confirm")
    try:
        response = httpx.post(url, params={"id": ident}, timeout=10.0)
    except httpx.HTTPError as exc:
        raise StatusError(f"no answer from {url}: {exc}") from None
    if response.status_code == httpx.codes.CONFLICT:
        raise RemovalNotHeld(response.text.strip())
    if response.status_code != httpx.codes.OK:
        raise StatusError(f"{url} answered {response.status_code}: {response.text.strip()[:200]}")
    return response.text.strip()


def fetch_status(address: str) -> dict[str, Any]:
    """The `/status` document of the driver whose status server listens on `address`."""
    return fetch_json(address, "/status")


def fetch_json(address: str, path: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """The JSON document at `path` of the status server on `address`. Raises `StatusError`, one line for a person,
    when it does not answer or answers with something else."""
    url = _url(address, path)
    try:
        response = httpx.get(url, params=params, timeout=timeout)
    except httpx.TimeoutException:
        raise StatusError(f"the status server at {address} did not answer {path} within {timeout:g} s") from None
    except httpx.TransportError as exc:
        raise StatusError(
            f"no status server at {address}: {why_unreachable(exc)}; is the driver running, with --status-addr "
            f"{address}?"
        ) from None
    if response.status_code != httpx.codes.OK:
        raise StatusError(f"{url} answered {response.status_code}: {response.text.strip()[:200]}")
    try:
        document: dict[str, Any] = response.json()
    except json.JSONDecodeError:
        raise StatusError(f"{url} answered with something that is not JSON") from None
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
    effect = {
        "on": "",
        "off": " (a reload resets the connections queued on the old listener)",
        "unknown": " (not readable here: it acts in each Caddy's namespace; set it there)",
    }.get(migrate, "")
    yield f"kernel:  net.ipv4.tcp_migrate_req {migrate}{effect}"
    yield f"routes:  {doc['routes']['desired']} desired"
    yield from _serving_lines(doc["serving"])
    if "certificates" in doc:  # a driver older than the section
        yield from _certificate_lines(doc["certificates"])
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
    for failed in upstreams.get("failed", ()):
        yield f"  upstream {_failed_upstream_text(failed)}"
    routes = caddy["routes"]
    stale = routes.get("stale", 0)  # a driver older than the count has none
    kept = f" ({stale} of them stale: their last good version is among the applied)" if stale else ""
    yield f"  routes: {routes['applied']} applied, {routes['rejected']} rejected{kept}"
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


def _serving_lines(serving: dict[str, Any]) -> Iterator[str]:
    held = serving["removal_held_back"]
    if held is not None:
        yield (
            f"REMOVAL HELD BACK since {held['since']}: {held['hosts']} of {held['served']} hosts keep serving "
            f"({held['why']})"
        )
        yield (
            f"  applied when a set removes them again after {held['confirmed_by_a_set_after']}, "
            f"or now with: coretraffic confirm-removal {held['id']}"
        )
        yield f"  first hosts: {', '.join(held['first_hosts'])}"
        if held["whole_set"]:
            yield "  nothing of the newest set is applied (the driver restarted): the Caddies keep what they run"
    for stale in serving["stale"]:
        version = stale["serving"]
        expired = "EXPIRED " if version["certificate_expired"] else ""
        yield (
            f"STALE {stale['host']} since {stale['since']}: its last good version serves (certificate "
            f"{version['certificate_sha256'][:16]}, {expired}valid until {version['certificate_not_after']})"
        )
        yield from (f"  new config refused: {reason}" for reason in stale["refused_because"])
    rejected = serving.get("rejected", 0)  # a driver older than the count has none
    if serving["stale"] or rejected:
        yield (
            f"hosts:   {len(serving['stale'])} stale, {rejected} rejected: `coretraffic hosts` lists every host "
            "with its state and why"
        )


def _certificate_lines(certificates: dict[str, Any]) -> Iterator[str]:
    """`certificates: 12 loaded, 1 EXPIRED; within 7/14/30 days: 0/1/2`, then every expired one and the soonest."""
    expired = certificates["expired"]
    within = "/".join(str(n) for n in certificates["expiring_within_days"].values())
    days = "/".join(certificates["expiring_within_days"])
    head = f"{certificates['loaded']} loaded" + (f", {len(expired)} EXPIRED" if expired else "")
    yield f"certificates: {head}; expiring within {days} days: {within}"
    for entry in expired:
        yield f"  EXPIRED {entry['host']}: {entry['not_after']} ({-entry['days_left']:g} days ago)"
    for entry in certificates["soonest"]:
        yield f"  {entry['host']}: {entry['not_after']} (in {entry['days_left']:g} days)"


def _failing_upstream_text(upstream: dict[str, Any]) -> str:
    """One entry of `/status`'s `upstreams.failing` as `coretraffic status` prints it."""
    hosts = ", ".join(upstream["hosts"])
    more = upstream["hosts_total"] - len(upstream["hosts"])
    hosts += f" and {more} more" if more > 0 else ""
    return f"{upstream['address']} ({counted(upstream['fails'], 'fail')}{'; ' + hosts if hosts else ''})"


def _failed_upstream_text(upstream: dict[str, Any]) -> str:
    """One entry of `/status`'s `upstreams.failed`: how often it failed since the driver started, and when last."""
    hosts = ", ".join(upstream["hosts"])
    more = upstream["hosts_total"] - len(upstream["hosts"])
    hosts += f" and {more} more" if more > 0 else ""
    return (
        f"{upstream['address']} failed {counted(upstream['failures'], 'time')} since start, last at "
        f"{upstream['last_failure']}{'; ' + hosts if hosts else ''}"
    )
