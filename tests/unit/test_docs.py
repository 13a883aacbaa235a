"""The repository's Markdown: links that lead somewhere, no internal references, tables that render.

Pure text checks, no network. Every Markdown file of the repository is read (virtual environments, npm's
`node_modules` and build metadata left out). Each failure names the file, the line and what is wrong.

- Links: a relative link points to a file or folder that exists; a `#anchor`, on the same page or another
  Markdown page, names a heading there. Anchors follow GitHub's rules: the heading's text in lower case, every
  character but letters, digits, spaces, `-` and `_` removed, spaces turned into `-`; a repeated heading gets
  `-1`, `-2`, ... Links inside code (fenced blocks, inline code) are not links and are not checked.
- No internal references outside fenced code blocks: issue numbers (`issue 12`, `issues #3`) and files that are
  not in the repository (`caddy-notes`, `../shared`, `architecture.md`) mean nothing to a reader.
- Tables: the row under the header is the delimiter row (`|---|---|`) with as many cells as the header, and no
  row has more cells than the header; otherwise GitHub shows the table as text or drops cells.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIPPED_FOLDERS = {".venv", "node_modules", ".git"}

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
_INLINE_CODE = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)\1", re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_LINK_TEXT = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
_INTERNAL_REFERENCES = (
    (re.compile(r"\bissue\s+\d+", re.IGNORECASE), "an issue number"),
    (re.compile(r"\bissues?\s+#\d+", re.IGNORECASE), "an issue number"),
    (re.compile(r"caddy-notes", re.IGNORECASE), "a file outside the repository (caddy-notes)"),
    (re.compile(r"\.\./shared"), "a folder outside the repository (../shared)"),
    (re.compile(r"\barchitecture\.md", re.IGNORECASE), "a file outside the repository (architecture.md)"),
)
_DELIMITER_CELL = re.compile(r"^\s*:?-+:?\s*$")


def markdown_files() -> list[Path]:
    """Every Markdown file of the repository, sorted, outside the folders tools fill."""
    found = []
    for path in REPO.rglob("*.md"):
        parts = path.relative_to(REPO).parts[:-1]
        if any(part in SKIPPED_FOLDERS or part.endswith(".egg-info") for part in parts):
            continue
        found.append(path)
    return sorted(found)


@dataclass(frozen=True)
class Page:
    """A Markdown file read three ways, line numbers kept in each."""

    path: Path
    lines: list[str]  # as written
    prose: list[str]  # fenced code blocks blanked
    text: list[str]  # fenced code blocks and inline code blanked: what may hold links

    @property
    def name(self) -> str:
        return _shown(self.path)


def _shown(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


@cache
def read_page(path: Path) -> Page:
    lines = path.read_text(encoding="utf-8").split("\n")
    prose = []
    fence: str | None = None
    for line in lines:
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            prose.append("")
        elif fence is not None:
            # A fence closes on a run of the same character at least as long as the one that opened it.
            closing = _FENCE.match(line)
            if (
                closing
                and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence)
                and not line.strip().lstrip(fence[0])
            ):
                fence = None
            prose.append("")
        else:
            prose.append(line)
    # Inline code may run over a line break; blank its content and keep the newlines so line numbers hold.
    text = _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), "\n".join(prose)).split("\n")
    return Page(path, lines, prose, text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading's text (before `-1`, `-2` for repeats)."""
    text = _INLINE_LINK_TEXT.sub(r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)
    text = "".join(ch for ch in text.strip().lower() if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def headings(page: Page) -> Iterator[tuple[int, str]]:
    """(line number, text) of each heading, ATX (`## x`) and setext (a line underlined with `=` or `-`)."""
    for index, line in enumerate(page.prose):
        atx = _ATX_HEADING.match(line)
        if atx:
            yield index + 1, atx.group(2)
            continue
        previous = page.prose[index - 1] if index else ""
        if (
            _SETEXT_UNDERLINE.match(line)
            and previous.strip()
            and not previous.lstrip().startswith(("#", "|", "-", "*", "+", ">"))
        ):
            yield index, previous.strip()


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a page has: its headings' slugs, repeats numbered, and HTML `id`/`name` anchors."""
    page = read_page(path)
    seen: dict[str, int] = {}
    found = set()
    for _, heading in headings(page):
        slug = github_slug(heading)
        if slug in seen:
            seen[slug] += 1
            found.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            found.add(slug)
    for line in page.prose:
        found.update(_HTML_ANCHOR.findall(line))
    return frozenset(found)


def link_problems(page: Page) -> Iterator[str]:
    for number, line in enumerate(page.text, start=1):
        for match in _LINK.finditer(line):
            target = match.group(1)
            if not target or _EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            file_part = urllib.parse.unquote(file_part)
            if file_part:
                base = REPO if file_part.startswith("/") else page.path.parent
                linked = (base / file_part.lstrip("/")).resolve()
                if not linked.exists():
                    yield f"{page.name}:{number}: link to {target!r}: no file {file_part!r} from {page.name}"
                    continue
                if page.path.is_relative_to(REPO) and not linked.is_relative_to(REPO):
                    yield f"{page.name}:{number}: link to {target!r} leaves the repository"
                    continue
            else:
                linked = page.path
            heading_exists = (
                not linked.is_file() or linked.suffix != ".md" or urllib.parse.unquote(anchor) in anchors(linked)
            )
            if anchor and not heading_exists:
                where = "this page" if linked == page.path else _shown(linked)
                yield f"{page.name}:{number}: link to {target!r}: no heading with anchor #{anchor} in {where}"


def reference_problems(page: Page) -> Iterator[str]:
    for number, line in enumerate(page.prose, start=1):
        for pattern, what in _INTERNAL_REFERENCES:
            for match in pattern.finditer(line):
                yield f"{page.name}:{number}: internal reference {match.group(0)!r} ({what})"


def table_cells(row: str) -> list[str]:
    """A table row's cells: split on `|` not escaped with a backslash, outer pipes dropped."""
    cells = re.split(r"(?<!\\)\|", row.strip())
    if cells and not cells[0].strip():
        cells = cells[1:]
    if cells and not cells[-1].strip():
        cells = cells[:-1]
    return cells


def table_problems(page: Page) -> Iterator[str]:
    index = 0
    prose = page.prose
    while index < len(prose):
        if not prose[index].lstrip().startswith("|"):
            index += 1
            continue
        start = index
        while index < len(prose) and prose[index].lstrip().startswith("|"):
            index += 1
        rows = prose[start:index]
        header = table_cells(rows[0])
        delimiter = table_cells(rows[1]) if len(rows) > 1 else []
        if not delimiter or not all(_DELIMITER_CELL.match(cell) for cell in delimiter):
            yield f"{page.name}:{start + 2}: table without its delimiter row (`|---|...`) under the header"
            continue
        if len(delimiter) != len(header):
            yield (
                f"{page.name}:{start + 2}: table's delimiter row has {len(delimiter)} cells, its header {len(header)}"
            )
        for offset, row in enumerate(rows[2:], start=start + 3):
            if len(table_cells(row)) > len(header):
                yield (
                    f"{page.name}:{offset}: table row has {len(table_cells(row))} cells, its header "
                    f"{len(header)}: the rest is not shown"
                )


FILES = markdown_files()
IDS = [path.relative_to(REPO).as_posix() for path in FILES]


def test_the_documents_are_found() -> None:
    for expected in ("README.md", "BENCHMARKS.md", "RELIABILITY.md", "docs/caddy.md", "tests/README.md"):
        assert REPO / expected in FILES, f"{expected} not among the Markdown files checked"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_links_lead_to_files_and_headings_that_exist(path: Path) -> None:
    problems = list(link_problems(read_page(path)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_no_internal_references(path: Path) -> None:
    problems = list(reference_problems(read_page(path)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_tables_have_their_delimiter_row(path: Path) -> None:
    problems = list(table_problems(read_page(path)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Before it happens: `coretraffic diff`", "before-it-happens-coretraffic-diff"),
        ("Traffic: metrics, access logs, dashboard", "traffic-metrics-access-logs-dashboard"),
        (
            "At scale: 10,000 to 100,000 hosts (`python -m benchmarks --scale`)",
            "at-scale-10000-to-100000-hosts-python--m-benchmarks---scale",
        ),
        ("Kubernetes (`deploy/kubernetes/`)", "kubernetes-deploykubernetes"),
        ("The marker (`@id`)", "the-marker-id"),
        ("snake_case [a link](x.md)", "snake_case-a-link"),
    ],
)
def test_slugs_follow_githubs_rules(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_a_repeated_heading_gets_a_number(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Figures\n\n## Figures\n\n## Figures\n\n```\n# not a heading\n```\n", encoding="utf-8")
    assert anchors(page) == {"figures", "figures-1", "figures-2"}


def test_each_kind_of_problem_is_found_with_its_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "[ok](#title) [gone](#nowhere) [no file](missing.md) `[in code](missing.md)`\n"
        "As issue 12 found; see caddy-notes.md.\n"
        "```\n"
        "issue 13 in a code block is fine\n"
        "```\n"
        "| a | b |\n"
        "| 1 | 2 |\n"
        "\n"
        "| a | b |\n"
        "|---|---|\n"
        "| 1 | 2 | 3 |\n",
        encoding="utf-8",
    )
    read = read_page(page)
    links = list(link_problems(read))
    assert len(links) == 2
    assert ":2: link to '#nowhere'" in links[0]
    assert ":2: link to 'missing.md'" in links[1]
    references = list(reference_problems(read))
    assert [problem.split(": ", 1)[0].rsplit(":", 1)[1] for problem in references] == ["3", "3"]
    tables = list(table_problems(read))
    assert len(tables) == 2
    assert ":8: table without its delimiter row" in tables[0]
    assert ":12: table row has 3 cells" in tables[1]
