"""The generated parts of the reference (docs/reference/*.md), and the one way to rewrite them (`just reference`).

The commands and settings tables are written from the code (the parser of `coretraffic`, its `_COMMAND_SETTINGS`
and `Settings`' field descriptions), between `<!-- generated: NAME -->` and `<!-- end -->`; everything else in
the pages is written by hand. `tests/unit/test_reference.py` asserts the file equals what this produces.
Also here: reading the hand-written tables back (`table_column`), for the tests that hold them to the code.
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic.fields import FieldInfo

import coretraffic
from coretraffic.cli.main import _COMMAND_SETTINGS, _command_defaults, _parser
from coretraffic.settings import Settings, default_state_dir
from tests.support.paths import REPO

PACKAGE = Path(coretraffic.__file__).parent

REFERENCE = REPO / "docs" / "reference"  # one page per subject
RECIPE = "just reference"
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end -->)", re.DOTALL)


def _commands() -> dict[str, argparse.ArgumentParser]:
    (subcommands,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subcommands.choices)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def commands_table() -> str:
    """Per command: what it does (its help), its own flags and arguments, and the settings it takes."""
    every = tuple(Settings.model_fields)
    rows = ["| command | what it does | own flags and arguments | settings |", "|---|---|---|---|"]
    for name, parser in _commands().items():
        own = [
            f"`{action.option_strings[0] if action.option_strings else action.dest}`"
            for action in parser._actions
            if action.dest not in Settings.model_fields and action.dest != "help"
        ]
        taken = _COMMAND_SETTINGS[name]
        settings = "all" if taken == every else ", ".join(f"`{_flag(s)}`" for s in taken)
        rows.append(f"| `{name}` | {_cell(parser.description or '')} | {', '.join(own) or '-'} | {settings} |")
    return "\n".join(rows) + "\n"


def _shown_default(name: str, field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    shown = _value(value)
    for command in _COMMAND_SETTINGS:
        other = _command_defaults(command).get(name)
        if other is not None and other != value:
            shown += f" ({command}: {_value(other)})"
    return shown


def _value(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        state_home = default_state_dir("-").parent
        if value.is_relative_to(state_home):  # written as the variable, not as this machine's home
            return f"`$XDG_STATE_HOME/{value.relative_to(state_home)}`"
        if value.is_relative_to(PACKAGE):  # shipped in the package: its path in the repository
            return f"the shipped `{value.relative_to(PACKAGE.parent)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`" if value != "" else "empty"


def _kind(field: FieldInfo) -> str:
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if annotation is bool:
        return "on/off (`--no-…` to turn off)"
    if typing.get_origin(annotation) is tuple:
        return "list"
    bounds = [
        f"{symbol} {getattr(m, attr):g}"
        for m in field.metadata
        for kind, attr, symbol in ((Gt, "gt", ">"), (Ge, "ge", ">="), (Le, "le", "<="))
        if isinstance(m, kind)
    ]
    if annotation is int or annotation is float:
        base = "integer" if annotation is int else "number"
    else:
        base = "path" if "Path" in str(annotation) else "text"
    return " ".join([base, ", ".join(bounds)]).strip()


def settings_table() -> str:
    """Every setting: flag, variable, value, default, the commands that take it, its description in code."""
    rows = ["| flag | variable | value | default | commands | meaning |", "|---|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        commands = ", ".join(c for c, taken in _COMMAND_SETTINGS.items() if name in taken)
        rows.append(
            f"| `{_flag(name)}` | `CORETRAFFIC_{name.upper()}` | {_kind(field)} | {_shown_default(name, field)} | "
            f"{commands} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {"commands": commands_table, "settings": settings_table}


def generated(text: str) -> str:
    """`text` with each generated block written anew; a block without a generator is an error."""

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATORS:
            raise KeyError(f"the reference has a generated block {name!r} that nothing generates")
        return f"{match[1]}{GENERATORS[name]()}{match[4]}"

    return _BLOCK.sub(block, text)


def generated_blocks(text: str) -> list[str]:
    return [match["name"] for match in _BLOCK.finditer(text)]


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the tables under `heading` (up to the next heading of its level or above), without their
    header rows: how the tests read a hand-written table back."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    rows = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return [
        row for i, row in enumerate(rows) if not _separator(row) and not (i + 1 < len(rows) and _separator(rows[i + 1]))
    ]


def _separator(row: list[str]) -> bool:
    return set("".join(row)) <= set("-: ")


def ticked(cell: str) -> list[str]:
    """The backticked values of a table cell."""
    return re.findall(r"`([^`]+)`", cell)


def page(name: str) -> str:
    return (REFERENCE / f"{name}.md").read_text()


def main() -> int:
    for path in sorted(REFERENCE.glob("*.md")):
        text = path.read_text()
        if generated_blocks(text):
            path.write_text(generated(text))
            print(f"rewrote the generated parts of {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
