"""A `diff` plan printed: as text for a person (coloured at a terminal) or as JSON for a program.

Pure. The plan holds no secret, so neither does what is printed here.
"""

from __future__ import annotations

import json

from coretraffic.caddyjson.layout import JSON
from coretraffic.core.text import counted
from coretraffic.diff.plan import Plan

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
        values = " -> ".join(difference[side] for side in ("from", "to") if side in difference)
        lines.append(
            paint(f"{mark} config {difference['path']}{detail}{': ' + values if values else ''}", mark, colour)
        )
    for part in plan.unmanaged:
        mark = _FATE_MARKS.get(part["fate"], "-")  # the rest: "removed: <why>"
        shape = (
            f"; listen {', '.join(part['listen']) or '-'}, {counted(part['routes'], 'route')}"
            if "listen" in part
            else ""
        )
        lines.append(paint(f"{mark} {part['name']}: not managed by coretraffic, {part['fate']}{shape}", mark, colour))
    lines += [f"warning: {w['host']}: {w['field']}: {w['message']}" for w in plan.warnings]
    if plan.held_back:
        lines.append(paint(f"! held back: {plan.held_back}", "!", colour))
    lines.append(", ".join(f"{count} {name}" for name, count in plan.counts.items()))
    return "\n".join(lines) + "\n"


def _host_lines(entry: JSON, colour: bool) -> list[str]:
    mark = _MARKS[entry["action"]]
    head = f"{mark} {entry['host']}"
    if entry["action"] == "rejected":
        head += f" rejected ({entry['effect']})"
    lines = [paint(head, mark, colour)]
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
        return [paint(f"    upstream + {u}", "+", colour) for u in change["added"]] + [
            paint(f"    upstream - {u}", "-", colour) for u in change["removed"]
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
            paint(f"      - {_certificate_text(before)}", "-", colour),
            paint(f"      + {_certificate_text(after)}", "+", colour),
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


def paint(text: str, mark: str, colour: bool) -> str:
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
        "held_back": plan.held_back,
    }
    if full is not None:
        document["full_diff"] = full
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
