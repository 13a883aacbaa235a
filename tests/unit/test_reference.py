"""The reference (docs/reference/) says what the code does: its generated tables are what the code generates, its
hand-written tables of `/status` paths and metrics name exactly what the code produces, and every problem text
validation can produce is in it.

In-process, no network: the status document and the metrics come from a real status server over a driver whose
parts are real but for its Caddy (`observed_driver`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from coretraffic.observe.status import StatusServer
from tests.support.observed_driver import observed_drivers
from tests.support.paths import REPO
from tests.support.reference import GENERATORS, RECIPE, REFERENCE, generated, generated_blocks, page, table_rows, ticked

# Objects whose keys are data, not fields: the table names the object, not each key.
_KEYED_BY_DATA = {"certificates.expiring_within_days"}
# Where problem texts are made, and the calls that carry them (the message is the call's last argument).
_PROBLEM_MODULES = (
    "core/validate.py",
    "core/certificates.py",
    "core/trust.py",
    "core/wire_fields.py",
    "core/models.py",
    "sources/routes_file.py",
)
_ERROR_CALLS = {"FieldError", "RouteSetError", "RoutesFileError"}
# Functions that make problem texts other than through those calls (warnings, notices, the duplicate message).
_PROBLEM_FUNCTIONS = {"_validate_one", "assemble", "_warning", "_finding"}


@pytest.fixture
async def servers(tmp_path: Path) -> list[StatusServer]:
    return await observed_drivers(tmp_path)


def test_the_generated_tables_are_what_the_code_generates() -> None:
    pages = sorted(REFERENCE.glob("*.md"))
    found = {block for path in pages for block in generated_blocks(path.read_text())}
    assert found == set(GENERATORS), f"generated blocks in {REFERENCE.relative_to(REPO)}: {sorted(found)}"
    for path in pages:
        text = path.read_text()
        assert text == generated(text), f"{path.relative_to(REPO)} differs from the code: run `{RECIPE}`"


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    """`a.b` for a field, `a[].b` for a field of a list's items (the items themselves are the list's row)."""
    if prefix and not prefix.endswith("[]"):
        yield prefix
    if prefix in _KEYED_BY_DATA:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item, f"{prefix}[]")


async def test_the_status_table_has_every_path_of_the_status_document_and_no_other(
    servers: list[StatusServer],
) -> None:
    documents = [await server.status_document() for server in servers]
    produced = {path for document in documents for path in _paths(document)}
    documented = {ticked(row[0])[0] for row in table_rows(page("status"), "## /status fields")}
    assert produced - documented == set(), "paths of /status missing from docs/reference/status.md"
    assert documented - produced == set(), "paths in docs/reference/status.md that /status does not have"


def _exposed(name: str, kind: str) -> str:
    """A family's name as `/metrics` shows it."""
    return name + {"counter": "_total", "info": "_info"}.get(kind, "")


def test_the_metrics_table_has_every_driver_metric_with_its_type_and_labels(servers: list[StatusServer]) -> None:
    produced: dict[str, tuple[str, set[str]]] = {}
    for server in servers:
        for family in server._registry.collect():
            if family.name.startswith("coretraffic_"):
                labels = {label for sample in family.samples for label in sample.labels if label != "le"}
                _, known = produced.setdefault(_exposed(family.name, family.type), (family.type, set()))
                known |= labels
    documented = {
        ticked(name)[0]: (kind, set(ticked(labels)))
        for name, kind, labels, _ in table_rows(page("metrics"), "## Driver metrics")
    }
    assert produced.keys() - documented.keys() == set(), "metrics missing from docs/reference/metrics.md"
    assert documented.keys() - produced.keys() == set(), "metrics in docs/reference/metrics.md the driver lacks"
    for name, (kind, labels) in produced.items():
        assert documented[name][0] == kind, f"{name} is a {kind}"
        # A family without samples here (nothing failing at scrape time) shows no labels to compare.
        assert not labels or documented[name][1] == labels, f"{name} has the labels {sorted(labels)}"


def _message_parts(node: ast.expr) -> Iterator[str]:
    """The fixed text of a message (a string or an f-string), in pieces long enough to be searched for."""
    pieces = [node.value] if isinstance(node, ast.Constant) else []
    if isinstance(node, ast.JoinedStr):
        pieces = [part.value for part in node.values if isinstance(part, ast.Constant)]
    for piece in pieces:
        if isinstance(piece, str) and len(piece.strip()) >= 4:
            yield piece.strip()


def _problem_texts() -> Iterator[tuple[str, str]]:
    """(module, fixed piece) of each problem text validation can produce."""
    for module in _PROBLEM_MODULES:
        tree = ast.parse((REPO / "coretraffic" / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ERROR_CALLS:
                yield from ((module, piece) for piece in _message_parts(node.args[-1]))
        for text in _texts_in_functions(tree, _PROBLEM_FUNCTIONS):
            if len(_text(text)) > 25:
                yield from ((module, piece) for piece in _message_parts(text))


def _texts_in_functions(tree: ast.Module, names: Collection[str]) -> Iterator[ast.JoinedStr | ast.Constant]:
    """Every string and f-string in the bodies (docstrings left out) of the functions called `names`."""
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) and function.name in names:
            body = function.body[1:] if ast.get_docstring(function) else function.body
            for statement in body:
                yield from (n for n in ast.walk(statement) if isinstance(n, ast.JoinedStr | ast.Constant))


def _text(node: ast.JoinedStr | ast.Constant) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    return "".join(str(part.value) for part in node.values if isinstance(part, ast.Constant))


# Where Coreflow's replies are made (and the held-back removal's text they carry): every fixed piece of their texts
# must be in the reference's replies table.
_REPLY_FUNCTIONS = {
    "sources/coreflow/handler.py": {"reply_for", "fleet_reply", "_problem", "handle_update_routing"},
    "core/serving.py": {"reason", "removal_guard_rule"},
}


def _reply_texts() -> Iterator[tuple[str, str]]:
    for module, functions in _REPLY_FUNCTIONS.items():
        tree = ast.parse((REPO / "coretraffic" / module).read_text())
        for text in _texts_in_functions(tree, functions):
            if len(_text(text).strip()) >= 12:
                yield from ((module, piece) for piece in _message_parts(text) if len(piece) >= 12)


@pytest.mark.parametrize(
    ("texts", "name", "at_least"),
    [(_problem_texts, "routes", 31), (_reply_texts, "coreflow", 6)],
    ids=["problem texts", "reply texts"],
)
def test_every_text_is_in_the_reference(
    texts: Callable[[], Iterator[tuple[str, str]]], name: str, at_least: int
) -> None:
    """Every fixed piece of every problem text validation can produce (`routes.md`) and of every reply Coreflow
    can get (`coreflow.md`)."""
    reference = page(name)
    found = sorted(set(texts()))
    assert len(found) >= at_least, found  # the extraction still finds the texts
    missing = [f"{module}: {piece!r}" for module, piece in found if piece not in reference]
    assert missing == [], f"texts missing from docs/reference/{name}.md"
