"""`diff --full`: a unified diff of the two Caddy JSON documents a plan compares, every secret a fingerprint.

Pure. The documents are printed with sorted keys, one value a line, and matched on the lines that occur once in
each (route `@id`s, certificate fingerprints), so that 200,000-line documents are compared gap by gap.
"""

from __future__ import annotations

import bisect
import collections
import difflib
from collections.abc import Sequence
from typing import Any

import orjson

from coretraffic.caddyjson.redact import redact
from coretraffic.diff.plan import Plan
from coretraffic.diff.report import paint


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
    return "".join((paint(line, line[0], colour) if line[0] in "+-@" else line) + "\n" for line in lines)


def _pretty(document: Any) -> list[str]:
    # orjson: the same text as json.dumps(indent=2, sort_keys=True, ensure_ascii=False), ten times faster.
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()


class _AnchoredMatcher(difflib.SequenceMatcher[str]):
    """difflib's matcher, anchored on lines that occur once in each document (as in patience diff).

    Plain difflib takes seconds on the two 200,000-line documents of a 10,000-host config; the anchors (route
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
