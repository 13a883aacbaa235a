"""`coretraffic diff`: what a route set would change in the running Caddy, before it happens.

A dry run of the loop's last stop. The route set goes through the same validation (spread over the cores by
`parallel`) and renderer (`wiring.make_renderer`) as `run`; the result is compared with what Caddy runs
(`GET /config/`) and printed as a plan per host, then, with `--full`, as a unified diff of the two Caddy JSON
documents with every secret replaced by a fingerprint.

The planning (`plan_diff`) and printing (`format_text`, `format_json`, `full_diff`) are pure; `run_diff` does the
I/O. The running side is read from Caddy's JSON alone, so the plan also describes a Caddy that coretraffic never
configured. Hosts are found by their `@id` (`render.ROUTE_ID_PREFIX`) at any depth, and what a host's node says
about it is read in one place (`_host_state`), so a new server layout needs only that function adapted. Whatever
cannot be attributed to a host is still compared ("config" paths), and a last whole-document comparison makes sure
that no difference goes unreported, so the exit code is right even when the plan cannot say more.

Exit codes follow `diff`/`kubectl diff`: 0 nothing would change, 1 something would (a rejected host counts: the
set differs from what runs), 2 the diff could not be made.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import copy
import datetime
import difflib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bcrypt
import orjson

from coretraffic.app.parallel import validate_on_cores
from coretraffic.app.wiring import admin_address, make_renderer
from coretraffic.caddy.admin import AdminAddress, CaddyAdmin
from coretraffic.caddyjson.ownership import (
    base_parts_record,
    base_parts_recorded,
    foreign_parts,
    keep_foreign,
    part_path,
    unmanaged_parts,
)
from coretraffic.caddyjson.render import (
    BASE_PARTS_PREFIX,
    CONFIG_ID_PREFIX,
    HTTP_SERVER,
    JSON,
    ROUTE_ID_PREFIX,
    VERSION_HEADER,
    config_id,
    with_admin_listen,
)
from coretraffic.core.redact import redact
from coretraffic.core.validate import Certificate, Validation, check_pem_pair, normalise_host_name
from coretraffic.errors import (
    BaseConfigError,
    CaddyRejected,
    CaddyStartError,
    CaddyUnavailable,
    FieldError,
    RouteSetError,
    RoutesFileError,
)
from coretraffic.settings import Settings
from coretraffic.sources.routes_file import read_routes_document

EXIT_SAME, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
# bcrypt work spent verifying desired passwords against running hashes, in rounds (2**cost per check): about 2 s
# here, i.e. 32 checks at cost 10 or 2,048 at cost 4. Passwords past it are reported as not verified.
PASSWORD_WORK_BUDGET = 32 * 2**10
# Where render puts the config's marker `@id`: a digest of the inputs, bcrypt salts included, so it differs
# between two renderings of the same set. Everything else it digests is compared on its own.
_MARKER_PATH = ("apps", "http", "servers", HTTP_SERVER, "routes", 0, "@id")
_MARKER_SHOWN = CONFIG_ID_PREFIX + "<digest of the inputs>"
# Where render records which servers and apps came from the base config; those are reported one by one instead.
_BASE_PARTS_PATH = ("apps", "http", "servers", HTTP_SERVER, "@id")
_BASE_PARTS_SHOWN = BASE_PARTS_PREFIX + "<the base config's servers and apps>"
_LOAD_PEM_PATH = ("apps", "tls", "certificates", "load_pem")

Path = tuple[str | int, ...]
_Parsed = Mapping[tuple[str, str], Certificate]  # (certificate chain, private key) -> what validation found
Running = Literal["coretraffic", "empty", "foreign"]


# -- reading a Caddy config --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostState:
    """One host as a Caddy config serves it."""

    upstreams: tuple[str, ...]
    account: tuple[str, str] | None = field(repr=False)  # (user, bcrypt hash)
    version: str | None
    pem: tuple[str, str] | None = field(repr=False)  # (certificate chain, private key) from `load_pem`
    node: JSON = field(repr=False, compare=False)  # the JSON holding the host's `@id`
    path: Path = field(compare=False)  # where `node` sits in the config


@dataclass(frozen=True)
class CaddyView:
    """A Caddy config split into coretraffic's hosts, the rest of what it renders, and what it does not own."""

    hosts: dict[str, HostState]
    residue: Any  # the config without host routes, host certificates and unmanaged parts
    unmanaged: dict[str, Any]  # "server NAME" / "app NAME" -> its JSON


def read_config(config: Any) -> CaddyView:
    """What a Caddy config (as `GET /config/` returns it, or as rendered) holds, seen by coretraffic."""
    config = config if isinstance(config, dict) else {}  # Caddy answers `null` when it runs nothing
    unmanaged = unmanaged_parts(config)
    certificates = _get(config, "apps", "tls", "certificates", "load_pem")
    drops: dict[Path, Any] = {part_path(label): _DROP for label in unmanaged}
    if isinstance(certificates, list):
        drops[_LOAD_PEM_PATH] = _DROP
    trimmed = _replaced(config, drops)
    found: dict[str, tuple[JSON, JSON | None, Path]] = {}
    residue, _ = _scan(trimmed, (), None, found)
    by_tag = {_first_tag(entry): entry for entry in certificates} if isinstance(certificates, list) else {}
    states: dict[str, HostState] = {}
    summaries: dict[int, _RouteSummary] = {}
    for host, (node, route, path) in found.items():
        entry = by_tag.get(host)
        pem = (str(entry.get("certificate")), str(entry.get("key"))) if isinstance(entry, dict) else None
        states[host] = _host_state(node, route, pem, path, summaries)
    if isinstance(certificates, list):  # the certificates no host claims: the operator's own
        _set(residue, _LOAD_PEM_PATH, [entry for entry in certificates if _first_tag(entry) not in states])
    return CaddyView(states, residue, unmanaged)


def _scan(
    node: Any, path: Path, route: JSON | None, found: dict[str, tuple[JSON, JSON | None, Path]]
) -> tuple[Any, bool]:
    """Find every host `@id` at any depth (with its enclosing route); return a copy of `node` without the list
    items that hold one, and whether `node` holds one."""
    if isinstance(node, dict):
        ident = node.get("@id")
        if isinstance(ident, str) and ident.startswith(ROUTE_ID_PREFIX):
            found[ident.removeprefix(ROUTE_ID_PREFIX)] = (node, route, path)
            return None, True
        route = node if "handle" in node else route
        copied: JSON = {}
        holds = False
        for key, value in node.items():
            if isinstance(value, dict | list):
                value, inner = _scan(value, (*path, key), route, found)
                holds |= inner
            copied[key] = value
        return copied, holds
    if isinstance(node, list):
        kept = []
        holds = False
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                item, inner = _scan(item, (*path, index), route, found)
                if inner:
                    holds = True
                    continue
            kept.append(item)
        return kept, holds
    return node, False


@dataclass(frozen=True)
class _RouteSummary:
    dials: tuple[str, ...]
    account: tuple[str, str] | None
    version: str | None


def _host_state(
    node: JSON, route: JSON | None, pem: tuple[str, str] | None, path: Path, summaries: dict[int, _RouteSummary]
) -> HostState:
    """What the JSON says about one host: the only place that knows how render lays a host out.

    The `@id` sits on the host's own route, whose handlers then tell everything; or on an entry of a `map` handler
    in a route shared by several hosts: the entry's `outputs` are the host's upstreams (the proxy dials
    placeholders) and the shared route's handlers hold the rest. A shared route is summarised once.
    """
    scope = node if "handle" in node else route or {}
    summary = summaries.get(id(scope))
    if summary is None:
        summary = summaries[id(scope)] = _summarise(scope)
    outputs = node.get("outputs")
    upstreams = tuple(str(o) for o in outputs) if isinstance(outputs, list) else summary.dials
    return HostState(upstreams, summary.account, summary.version, pem, node, path)


def _summarise(route: JSON) -> _RouteSummary:
    dials: list[str] = []
    account: tuple[str, str] | None = None
    version: str | None = None
    for handler in _handlers(route):
        kind = handler.get("handler")
        if kind == "reverse_proxy":
            dials += [str(u.get("dial")) for u in handler.get("upstreams", []) if isinstance(u, dict)]
        elif kind == "authentication" and account is None:
            accounts = _get(handler, "providers", "http_basic", "accounts")
            if isinstance(accounts, list) and accounts and isinstance(accounts[0], dict):
                account = (str(accounts[0].get("username")), str(accounts[0].get("password")))
        elif kind == "headers" and version is None:
            values = _get(handler, "response", "set", VERSION_HEADER)
            if isinstance(values, list) and values:
                version = str(values[0])
    return _RouteSummary(tuple(dials), account, version)


def _handlers(node: Any) -> Iterator[JSON]:
    """Every handler at any depth (subroutes included), in document order."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _handlers(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                yield from _handlers(item)


def _first_tag(entry: Any) -> str | None:
    tags = entry.get("tags") if isinstance(entry, dict) else None
    return str(tags[0]) if isinstance(tags, list) and tags else None


# -- JSON surgery without copying 11 MB -------------------------------------------------------------------------

_DROP = object()


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _set(node: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _replaced(node: Any, replacements: Mapping[Path, Any]) -> Any:
    """`node` with the values at `replacements`' (existing) paths swapped or, for `_DROP`, deleted.

    Only the containers along those paths are copied: the rest is shared with `node`, never mutated.
    """
    if () in replacements:
        return replacements[()]
    by_key: dict[str | int, dict[Path, Any]] = {}
    for path, value in replacements.items():
        by_key.setdefault(path[0], {})[path[1:]] = value
    result: Any = dict(node) if isinstance(node, dict) else list(node)
    for key, rest in by_key.items():
        value = _replaced(result[key], rest)
        if value is _DROP:
            del result[key]
        else:
            result[key] = value
    return result


def _with_marker_shown(config: Any) -> Any:
    """`config` with render's two bookkeeping `@id`s as placeholders: what they stand for is compared on its own."""
    shown: dict[Path, Any] = {_MARKER_PATH: _MARKER_SHOWN} if config_id(config) else {}
    if base_parts_record(config) is not None:
        shown[_BASE_PARTS_PATH] = _BASE_PARTS_SHOWN
    return _replaced(config, shown) if shown else config


# -- planning ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What applying the desired config would change. Entries are JSON-ready and hold no secret."""

    hosts: tuple[JSON, ...]  # added, removed, changed and rejected hosts, by name
    warnings: tuple[JSON, ...]
    config: tuple[JSON, ...]  # differences outside the hosts: {"path", "change", "detail"?}
    unmanaged: tuple[JSON, ...]  # servers and apps coretraffic does not own, and what happens to them
    unchanged: int
    running: Running
    # The two documents `full_diff` compares (secrets still in them): the marker shown as a placeholder, and the
    # desired config holding the running hash wherever the desired password was verified against it.
    documents: tuple[Any, Any] = field(repr=False, compare=False)

    @property
    def counts(self) -> dict[str, int]:
        counts = {"added": 0, "removed": 0, "changed": 0, "rejected": 0}
        for entry in self.hosts:
            counts[entry["action"]] += 1
        return {**counts, "unchanged": self.unchanged}

    @property
    def has_changes(self) -> bool:
        return bool(self.hosts or self.config or any(u["fate"] != "left alone" for u in self.unmanaged))


def plan_diff(
    running: Any, desired: JSON, validation: Validation, *, password_work: int = PASSWORD_WORK_BUDGET
) -> Plan:
    """Compare what Caddy runs with the config rendered from `validation` (pure; bcrypt checks are bounded).

    As `run` would, the running config's foreign servers and apps are carried into the rendered one first.
    """
    desired, left_out = keep_foreign(desired, foreign_parts(running))
    running_doc, desired_doc = _with_marker_shown(running), _with_marker_shown(desired)
    old, new = read_config(running_doc), read_config(desired_doc)
    passwords = {r.host: r.basic_auth.password for r in validation.routes if r.basic_auth is not None}
    # The desired side's certificates were parsed by validation (maybe in another process: `parallel`).
    parsed = {(r.certificate_pem, r.private_key_pem): r.certificate for r in validation.routes}
    checker = _PasswordChecker(password_work)
    entries: list[JSON] = []
    adopted: dict[Path, Any] = {}
    unchanged = 0
    rejected = _rejected(validation, old.hosts, new.hosts)
    for host in sorted(old.hosts.keys() | new.hosts.keys()):
        before, after = old.hosts.get(host), new.hosts.get(host)
        if after is None:
            assert before is not None
            if host not in rejected:  # a served host that is now rejected is reported as rejected
                entries.append({"host": host, "action": "removed", "upstreams": list(before.upstreams)})
            continue
        if before is None:
            entries.append({"host": host, "action": "added", **_describe_host(after, parsed)})
            continue
        changes, kept_hash = _host_changes(before, after, passwords.get(host), checker, parsed)
        node = after.node
        if kept_hash is not None and after.account is not None:
            node = adopted[after.path] = _with_password(after.node, after.account[1], kept_hash)
        if not changes and node != before.node:
            changes.append({"field": "route", "change": "other settings"})
        if changes:
            entries.append({"host": host, "action": "changed", "changes": changes})
        else:
            unchanged += 1
    entries += rejected.values()
    entries.sort(key=lambda entry: str(entry["host"]))
    config = _differences(old.residue, new.residue, ())
    owners = base_parts_recorded(running), base_parts_recorded(desired)
    unmanaged = _unmanaged(old.unmanaged, new.unmanaged, left_out, *owners)
    documents = (running_doc, _replaced(desired_doc, adopted))
    if not (entries or config or any(u["fate"] != "left alone" for u in unmanaged)) and documents[0] != documents[1]:
        # Something the per-host reading does not see (e.g. hosts regrouped); --full shows it.
        config.append({"path": "host routes", "change": "changed", "detail": "see --full"})
    warnings = tuple({"host": p.host, "field": p.field, "message": p.message} for p in validation.warnings)
    return Plan(tuple(entries), warnings, tuple(config), tuple(unmanaged), unchanged, _running(running), documents)


def _running(config: Any) -> Running:
    if config_id(config):
        return "coretraffic"
    # A Caddy started with only its admin block (as coretraffic starts it) serves nothing: that is empty too.
    return "foreign" if isinstance(config, dict) and config.get("apps") else "empty"


def _rejected(validation: Validation, old: Mapping[str, HostState], new: Mapping[str, HostState]) -> dict[str, JSON]:
    """Rejected configs by host (or `#index`), with what that means for the host in Caddy."""
    problems: dict[str, list[JSON]] = {}
    for problem in validation.errors:
        problems.setdefault(problem.host, []).append({"field": problem.field, "message": problem.message})
    rejected: dict[str, JSON] = {}
    for label, reasons in problems.items():
        try:
            host = normalise_host_name(label)
        except FieldError:
            host = label
        if host in new:
            effect = "another config for this host is applied"
        elif host in old:
            effect = "served now: run would stop serving it"
        else:
            effect = "not served now"
        rejected[host] = {"host": host, "action": "rejected", "effect": effect, "problems": reasons}
    return rejected


def _describe_host(state: HostState, parsed: _Parsed) -> JSON:
    return {
        "upstreams": list(state.upstreams),
        "certificate": _certificate(state.pem, parsed),
        "basic_auth_user": state.account[0] if state.account else None,
    }


def _certificate(pem: tuple[str, str] | None, parsed: _Parsed) -> JSON | None:
    if pem is None:
        return None
    try:
        certificate = parsed.get(pem) or check_pem_pair(*pem)
    except FieldError as exc:
        return {"error": f"{exc.field}: {exc.message}"}
    return {
        "sha256": certificate.sha256,
        "names": list(certificate.names),
        "not_after": certificate.not_after.isoformat(),
    }


def _host_changes(
    before: HostState, after: HostState, password: str | None, checker: _PasswordChecker, parsed: _Parsed
) -> tuple[list[JSON], str | None]:
    """What changes on a host, and the running password hash when the desired password matches it."""
    changes: list[JSON] = []
    if before.upstreams != after.upstreams:
        added = [u for u in after.upstreams if u not in before.upstreams]
        removed = [u for u in before.upstreams if u not in after.upstreams]
        if added or removed:
            changes.append({"field": "upstreams", "added": added, "removed": removed})
        else:
            changes.append({"field": "upstreams", "reordered": list(after.upstreams)})
    if before.pem != after.pem:
        replaced = {"from": _certificate(before.pem, parsed), "to": _certificate(after.pem, parsed)}
        changes.append({"field": "certificate", **replaced})
    kept_hash = None
    if before.account != after.account:  # the hashes always differ (fresh salt): compare users, check passwords
        auth, kept_hash = _auth_change(before.account, after.account, password, checker)
        if auth is not None:
            changes.append({"field": "basic_auth", **auth})
    if before.version != after.version:
        changes.append({"field": "version_header", "from": before.version, "to": after.version})
    return changes, kept_hash


def _auth_change(
    before: tuple[str, str] | None, after: tuple[str, str] | None, password: str | None, checker: _PasswordChecker
) -> tuple[JSON | None, str | None]:
    if before is None or after is None:
        account = before or after
        assert account is not None
        return {"change": "removed" if after is None else "added", "user": account[0]}, None
    if before[0] != after[0]:
        return {"change": "user", "from": before[0], "to": after[0]}, None
    verdict = checker.matches(password, before[1]) if password is not None else None
    if verdict is True:
        return None, before[1]
    return {"change": "password" if verdict is False else "password not verified", "user": after[0]}, None


class _PasswordChecker:
    """`bcrypt.checkpw` within a work budget; the same (password, hash) pair is checked once."""

    def __init__(self, work: int) -> None:
        self._work = work
        self._verdicts: dict[tuple[str, str], bool | None] = {}

    def matches(self, password: str, hashed: str) -> bool | None:
        """True or False, or None when the budget is spent or the hash is not bcrypt."""
        key = (password, hashed)
        if key not in self._verdicts:
            self._verdicts[key] = self._check(password, hashed)
        return self._verdicts[key]

    def _check(self, password: str, hashed: str) -> bool | None:
        try:
            cost = int(hashed.split("$")[2])
        except (IndexError, ValueError):
            return None
        if 2**cost > self._work:
            return None
        self._work -= 2**cost
        try:
            return bcrypt.checkpw(password.encode(), hashed.encode())
        except ValueError:  # not a bcrypt hash after all
            return None


def _with_password(node: JSON, old_hash: str, new_hash: str) -> JSON:
    """A copy of a host's node with `old_hash` swapped for `new_hash` in its accounts (a small node)."""
    swapped: JSON = copy.deepcopy(node)
    for handler in _handlers(swapped):
        for account in _get(handler, "providers", "http_basic", "accounts") or []:
            if isinstance(account, dict) and account.get("password") == old_hash:
                account["password"] = new_hash
    return swapped


def _differences(old: Any, new: Any, path: Path) -> list[JSON]:
    """Paths where two JSON values differ, never with the values (they may be secrets)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[JSON] = []
        for key in sorted(old.keys() | new.keys()):
            if key not in new:
                found.append({"path": _path_text((*path, key)), "change": "removed"})
            elif key not in old:
                found.append({"path": _path_text((*path, key)), "change": "added"})
            else:
                found += _differences(old[key], new[key], (*path, key))
        return found
    if isinstance(old, list) and isinstance(new, list):
        if len(old) == len(new):
            return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _differences(a, b, (*path, i))]
        return [{"path": _path_text(path), "change": "changed", "detail": f"{len(old)} -> {len(new)} items"}]
    return [{"path": _path_text(path), "change": "changed"}]


def _path_text(path: Path) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return text or "(whole config)"


def _unmanaged(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    left_out: Mapping[str, str],
    from_base_before: frozenset[str],
    from_base: frozenset[str],
) -> list[JSON]:
    entries = []
    for name in sorted(old.keys() | new.keys()):
        if name in left_out:
            fate = f"removed: it {left_out[name]}"
        elif name not in new:  # foreign parts are all carried over: this one came from the base config
            fate = "removed: no longer in the base config"
        elif name not in old:
            fate = "added by the base config"
        elif old[name] != new[name]:
            fate = "changed by the base config"
        else:  # a foreign part the base config now defines as it is: run records it as the base's
            fate = (
                "left alone" if (name in from_base_before) == (name in from_base) else "taken over by the base config"
            )
        entries.append({"name": name, "fate": fate, **_unmanaged_shape(new.get(name, old.get(name)))})
    return entries


def _unmanaged_shape(part: Any) -> JSON:
    if not isinstance(part, dict) or "listen" not in part:
        return {}
    return {"listen": [str(a) for a in part.get("listen") or []], "routes": len(part.get("routes") or [])}


# -- printing ---------------------------------------------------------------------------------------------------

_COLOURS = {"+": "32", "-": "31", "~": "33", "!": "1;31", "=": "2", "@": "36"}
_MARKS = {"added": "+", "removed": "-", "changed": "~", "rejected": "!"}
_FATE_MARKS = {
    "left alone": "=",
    "added by the base config": "+",
    "changed by the base config": "~",
    "taken over by the base config": "~",
}
_RUNNING_TEXT = {
    "coretraffic": "Caddy runs a config rendered by coretraffic.",
    "empty": "Caddy runs an empty config (no apps).",
    "foreign": "Caddy runs a config not rendered by coretraffic.",
}


def format_text(plan: Plan, *, colour: bool = False) -> str:
    lines = [_RUNNING_TEXT[plan.running]]
    for entry in plan.hosts:
        lines += _host_lines(entry, colour)
    for difference in plan.config:
        mark = {"added": "+", "removed": "-"}.get(difference["change"], "~")
        detail = f" ({difference['detail']})" if "detail" in difference else ""
        lines.append(_paint(f"{mark} config {difference['path']}{detail}", mark, colour))
    for part in plan.unmanaged:
        mark = _FATE_MARKS.get(part["fate"], "-")  # the rest: "removed: <why>"
        shape = (
            f"; listen {', '.join(part['listen']) or '-'}, {_plural(part['routes'], 'route')}"
            if "listen" in part
            else ""
        )
        lines.append(_paint(f"{mark} {part['name']}: not managed by coretraffic, {part['fate']}{shape}", mark, colour))
    lines += [f"warning: {w['host']}: {w['field']}: {w['message']}" for w in plan.warnings]
    lines.append(", ".join(f"{count} {name}" for name, count in plan.counts.items()))
    return "\n".join(lines) + "\n"


def _host_lines(entry: JSON, colour: bool) -> list[str]:
    mark = _MARKS[entry["action"]]
    head = f"{mark} {entry['host']}"
    if entry["action"] == "rejected":
        head += f" rejected ({entry['effect']})"
    lines = [_paint(head, mark, colour)]
    if entry["action"] in ("added", "removed"):
        lines.append(f"    upstreams {', '.join(entry['upstreams']) or '(none)'}")
    if entry["action"] == "added":
        lines.append(f"    certificate {_certificate_text(entry['certificate'])}")
        if entry["basic_auth_user"] is not None:
            lines.append(f"    basic auth user {entry['basic_auth_user']}")
    for problem in entry.get("problems", []):
        lines.append(f"    {problem['field']}: {problem['message']}")
    for change in entry.get("changes", []):
        lines += _change_lines(change, colour)
    return lines


def _change_lines(change: JSON, colour: bool) -> list[str]:
    kind = change["field"]
    if kind == "upstreams" and "reordered" in change:
        return [f"    upstreams reordered: {', '.join(change['reordered'])}"]
    if kind == "upstreams":
        return [_paint(f"    upstream + {u}", "+", colour) for u in change["added"]] + [
            _paint(f"    upstream - {u}", "-", colour) for u in change["removed"]
        ]
    if kind == "certificate":
        before, after = change["from"], change["to"]
        what = (
            "chain changed (same leaf)"
            if before and after and before.get("sha256") == after.get("sha256")
            else "replaced"
        )
        return [
            f"    certificate {what}",
            _paint(f"      - {_certificate_text(before)}", "-", colour),
            _paint(f"      + {_certificate_text(after)}", "+", colour),
        ]
    if kind == "basic_auth":
        text = {
            "added": f"added (user {change.get('user')})",
            "removed": f"removed (user {change.get('user')})",
            "user": f"user {change.get('from')} -> {change.get('to')}",
            "password": f"password changed (user {change.get('user')})",
            "password not verified": f"password not verified (user {change.get('user')}; bcrypt check budget spent "
            "or the running hash is not bcrypt)",
        }[change["change"]]
        return [f"    basic auth {text}"]
    if kind == "version_header":
        return [f"    version header {change['from']} -> {change['to']}"]
    return ["    route changed in other settings (see --full)"]


def _certificate_text(certificate: JSON | None) -> str:
    if certificate is None:
        return "(none)"
    if "error" in certificate:
        return f"(unreadable: {certificate['error']})"
    expires = certificate["not_after"][:10]
    return f"sha256 {certificate['sha256'][:16]}, names {', '.join(certificate['names'])}, expires {expires}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _paint(text: str, mark: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS[mark]}m{text}\x1b[0m" if colour else text


def format_json(plan: Plan, *, full: str | None = None) -> str:
    document: JSON = {
        "changes": plan.has_changes,
        "summary": plan.counts,
        "running": plan.running,
        "hosts": list(plan.hosts),
        "config": list(plan.config),
        "unmanaged": list(plan.unmanaged),
        "warnings": list(plan.warnings),
    }
    if full is not None:
        document["full_diff"] = full
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def full_diff(plan: Plan, *, colour: bool = False) -> str:
    """A unified diff of the two Caddy JSON documents, keys sorted, secrets and certificates as fingerprints."""
    old, new = (_pretty(redact(document, certificates=True)) for document in plan.documents)
    lines = ["--- running (Caddy)", "+++ desired (routes)"]
    for group in _AnchoredMatcher(old, new).get_grouped_opcodes(3):
        lines.append(f"@@ -{_hunk_range(group[0][1], group[-1][2])} +{_hunk_range(group[0][3], group[-1][4])} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [" " + line for line in old[i1:i2]]
                continue
            lines += ["-" + line for line in old[i1:i2]]
            lines += ["+" + line for line in new[j1:j2]]
    if len(lines) == 2:
        return ""
    return "".join((_paint(line, line[0], colour) if line[0] in "+-@" else line) + "\n" for line in lines)


def _pretty(document: Any) -> list[str]:
    # orjson: the same text as json.dumps(indent=2, sort_keys=True, ensure_ascii=False), ten times faster.
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()


class _AnchoredMatcher(difflib.SequenceMatcher[str]):
    """difflib's matcher, anchored on lines that occur once in each document (as in patience diff).

    Plain difflib needs 2.6 s for the two 200,000-line documents of a 10,000-host config; the anchors (route
    `@id`s, certificate fingerprints) cut them into small gaps, each matched by difflib itself.
    """

    def __init__(self, a: Sequence[str], b: Sequence[str]) -> None:
        self._sequences = (a, b)
        self._blocks: list[difflib.Match] | None = None
        super().__init__(None, a, b, autojunk=False)

    def get_matching_blocks(self) -> list[difflib.Match]:
        if self._blocks is None:
            self._blocks = _matching_blocks(*self._sequences)
        return self._blocks


def _matching_blocks(a: Sequence[str], b: Sequence[str]) -> list[difflib.Match]:
    """What `SequenceMatcher.get_matching_blocks` returns, found gap by gap between the anchors."""
    blocks: list[tuple[int, int, int]] = []
    i = j = 0
    for anchor_i, anchor_j in [*_anchors(a, b), (len(a), len(b))]:
        if anchor_i - i == anchor_j - j > 0 and a[i:anchor_i] == b[j:anchor_j]:  # most gaps: nothing changed
            blocks.append((i, j, anchor_i - i))
        elif i < anchor_i and j < anchor_j:
            gap = difflib.SequenceMatcher(None, a[i:anchor_i], b[j:anchor_j], autojunk=False)
            blocks += [(i + m.a, j + m.b, m.size) for m in gap.get_matching_blocks() if m.size]
        blocks.append((anchor_i, anchor_j, 1))
        i, j = anchor_i + 1, anchor_j + 1
    blocks[-1] = (len(a), len(b), 0)  # difflib's sentinel in place of the end "anchor"
    merged: list[tuple[int, int, int]] = []
    for block in blocks:
        if merged and merged[-1][2] and (merged[-1][0] + merged[-1][2], merged[-1][1] + merged[-1][2]) == block[:2]:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + block[2])
        else:
            merged.append(block)
    if merged[-1][2]:  # the sentinel was merged into a block that reaches the ends
        merged.append((len(a), len(b), 0))
    return [difflib.Match(*block) for block in merged]


def _anchors(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    """Positions of lines unique in both `a` and `b`: the longest run of them in the same order in both."""
    count_a, count_b = collections.Counter(a), collections.Counter(b)
    in_b = {line: j for j, line in enumerate(b) if count_b[line] == 1}
    pairs = [(i, in_b[line]) for i, line in enumerate(a) if count_a[line] == 1 and line in in_b]
    # Longest increasing subsequence of the b positions (patience sorting, O(n log n)).
    tail_js: list[int] = []  # tail_js[k]: smallest b position ending a run of length k + 1
    tails: list[int] = []  # the index in `pairs` of that run's end
    previous: list[int] = []
    for index, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tail_js, j)
        previous.append(tails[k - 1] if k else -1)
        if k == len(tails):
            tail_js.append(j)
            tails.append(index)
        else:
            tail_js[k], tails[k] = j, index
    run: list[tuple[int, int]] = []
    index = tails[-1] if tails else -1
    while index >= 0:
        run.append(pairs[index])
        index = previous[index]
    return run[::-1]


def _hunk_range(start: int, stop: int) -> str:
    """A unified diff range, as difflib writes it: 1-based start, length omitted when 1."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


# -- the command ------------------------------------------------------------------------------------------------


async def run_diff(settings: Settings, *, full: bool, as_json: bool) -> int:
    """`coretraffic diff`: read the routes and the running config, print the plan; exit 0 same, 1 changes, 2 error."""
    try:
        if settings.routes is None:
            raise RoutesFileError("--routes FILE (or CORETRAFFIC_ROUTES) is required")
        address = admin_address(settings)
        # The cheapest bcrypt cost: desired hashes are never compared (their salts are fresh), passwords are
        # checked against the running hashes instead; at the configured cost each authed host would cost 60 ms.
        renderer = make_renderer(settings.model_copy(update={"bcrypt_cost": 4}))
        document = read_routes_document(settings.routes)
        # Caddy serialises its config (11 MB at 10,000 routes) while the routes are validated (about 1 s).
        validation, running = await asyncio.gather(
            validate_on_cores(document, datetime.datetime.now(datetime.UTC)),
            _running_config(address),
        )
        desired = with_admin_listen(renderer(validation.routes), address.listen)  # as `run` would load it
    except (
        RoutesFileError,
        RouteSetError,
        BaseConfigError,
        CaddyStartError,
        CaddyUnavailable,
        CaddyRejected,
        json.JSONDecodeError,
    ) as exc:
        print(f"coretraffic: diff: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
    plan = plan_diff(running, desired, validation)
    _print_plan(plan, full=full, as_json=as_json)
    return EXIT_CHANGES if plan.has_changes else EXIT_SAME


async def _running_config(address: AdminAddress) -> Any:
    admin = CaddyAdmin(address)
    try:
        return await admin.get_config()
    finally:
        await admin.aclose()


def _print_plan(plan: Plan, *, full: bool, as_json: bool) -> None:
    # Colour only for a person at a terminal; https://no-color.org: any non-empty NO_COLOR turns it off.
    colour = not as_json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    text = full_diff(plan, colour=colour) if full else None
    sys.stdout.write(format_json(plan, full=text) if as_json else format_text(plan, colour=colour) + (text or ""))
