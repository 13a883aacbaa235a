"""What a route set would change in the running Caddy: the plan `coretraffic diff` prints, made without I/O.

Both sides are read by `readback`, so the plan also describes a Caddy that coretraffic never configured; the
running config's foreign parts are carried into the desired one first, as `run` would (`ownership`). Whatever
cannot be attributed to a host is still compared ("config" paths), and a last whole-document comparison makes sure
that no difference goes unreported, so the exit code is right even when the plan cannot say more. Secrets never
reach the plan: password changes are found with bcrypt checks within a work budget, certificates by fingerprint.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import bcrypt

from coretraffic.caddyjson.layout import (
    ACCOUNT_PASSWORD,
    ACCOUNTS_PATH,
    BASE_PARTS_PATH,
    BASE_PARTS_PREFIX,
    CONFIG_ID_PREFIX,
    JSON,
    MARKER_PATH,
    base_parts_record,
    base_parts_recorded,
    config_id,
)
from coretraffic.caddyjson.ownership import foreign_parts, keep_foreign
from coretraffic.caddyjson.readback import HostState, handlers, read_config
from coretraffic.caddyjson.redact import value_text
from coretraffic.caddyjson.tree import Path, get_in, replaced
from coretraffic.core.certificates import Certificate, check_pem_pair
from coretraffic.core.serving import removal_guard_rule, removal_is_guarded
from coretraffic.core.validate import Validation, host_or_label
from coretraffic.errors import FieldError

# bcrypt work spent verifying desired passwords against running hashes, in rounds (2**cost per check): about 2 s
# here, i.e. 32 checks at cost 10 or 2,048 at cost 4. Passwords past it are reported as not verified.
PASSWORD_WORK_BUDGET = 32 * 2**10
# render's marker `@id` is a digest of the inputs, bcrypt salts included, so it differs between two renderings of
# the same set; its record of the base config's servers and apps is reported part by part. Both are compared as
# these placeholders.
_MARKER_SHOWN = CONFIG_ID_PREFIX + "<digest of the inputs>"
_BASE_PARTS_SHOWN = BASE_PARTS_PREFIX + "<the base config's servers and apps>"

_Parsed = Mapping[tuple[str, str], Certificate]  # (certificate chain, private key) -> what validation found
Running = Literal["coretraffic", "empty", "foreign"]


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
    # What `run` would hold back of this plan: the removals, when they are a mass removal (`core.serving`).
    held_back: str = ""

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
    documents = (running_doc, replaced(desired_doc, adopted))
    if not (entries or config or any(u["fate"] != "left alone" for u in unmanaged)) and documents[0] != documents[1]:
        # Something the per-host reading does not see (e.g. hosts regrouped); --full shows it.
        config.append({"path": "host routes", "change": "changed", "detail": "see --full"})
    warnings = tuple({"host": p.host, "field": p.field, "message": p.message} for p in validation.warnings)
    removed = sum(entry["action"] == "removed" for entry in entries)
    held_back = (
        f"run holds back the removal of {removed} of {len(old.hosts)} hosts until it comes again "
        f"--removal-confirm-after later or is confirmed ({removal_guard_rule()})"
        if removal_is_guarded(removed, len(old.hosts), len(new.hosts))
        else ""
    )
    return Plan(
        tuple(entries),
        warnings,
        tuple(config),
        tuple(unmanaged),
        unchanged,
        _running(running),
        documents,
        held_back,
    )


def _running(config: Any) -> Running:
    if config_id(config):
        return "coretraffic"
    # A Caddy started with only its admin block (as coretraffic starts it) serves nothing: that is empty too.
    return "foreign" if isinstance(config, dict) and config.get("apps") else "empty"


def _with_marker_shown(config: Any) -> Any:
    """`config` with render's two bookkeeping `@id`s as placeholders: what they stand for is compared on its own."""
    shown: dict[Path, Any] = {MARKER_PATH: _MARKER_SHOWN} if config_id(config) else {}
    if base_parts_record(config) is not None:
        shown[BASE_PARTS_PATH] = _BASE_PARTS_SHOWN
    return replaced(config, shown) if shown else config


def _rejected(validation: Validation, old: Mapping[str, HostState], new: Mapping[str, HostState]) -> dict[str, JSON]:
    """Rejected configs by host (or `#index`), with what that means for the host in Caddy."""
    problems: dict[str, list[JSON]] = {}
    for problem in validation.errors:
        problems.setdefault(problem.host, []).append({"field": problem.field, "message": problem.message})
    rejected: dict[str, JSON] = {}
    for label, reasons in problems.items():
        host = host_or_label(label)
        if host in new:
            effect = "another config for this host is applied"
        elif host in old:
            effect = "served now: stays stale, its last good version keeps serving"
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
    if before.account != after.account:  # rendered at another cost, the hashes differ: compare users, check passwords
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
    for handler in handlers(swapped):
        for account in get_in(handler, *ACCOUNTS_PATH) or []:
            if isinstance(account, dict) and account.get(ACCOUNT_PASSWORD) == old_hash:
                account[ACCOUNT_PASSWORD] = new_hash
    return swapped


def _differences(old: Any, new: Any, path: Path) -> list[JSON]:
    """Paths where two JSON values differ, with the values as `value_text` shows them (secrets redacted)."""
    if old == new:
        return []
    name = path[-1] if path else ""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[JSON] = []
        for key in sorted(old.keys() | new.keys()):
            if key not in new:
                found.append({"path": _path_text((*path, key)), "change": "removed", "from": value_text(old[key], key)})
            elif key not in old:
                found.append({"path": _path_text((*path, key)), "change": "added", "to": value_text(new[key], key)})
            else:
                found += _differences(old[key], new[key], (*path, key))
        return found
    if isinstance(old, list) and isinstance(new, list):
        if len(old) == len(new):
            return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _differences(a, b, (*path, i))]
        return [
            {
                "path": _path_text(path),
                "change": "changed",
                "detail": f"{len(old)} -> {len(new)} items",
                "from": value_text(old, name),
                "to": value_text(new, name),
            }
        ]
    return [{"path": _path_text(path), "change": "changed", "from": value_text(old, name), "to": value_text(new, name)}]


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
