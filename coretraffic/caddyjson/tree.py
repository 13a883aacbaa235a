"""Surgery on large JSON trees without copying them: a config of 10,000 hosts is 11 MB.

Pure. `readback` cuts a config into hosts and the rest with it, and `diff` swaps values in the documents it
compares; whatever is not on the way to a changed value stays shared with the original, never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Path = tuple[str | int, ...]  # keys and list indexes from the root

DROP = object()  # as a replacement: delete the value instead


def get_in(node: Any, *keys: str) -> Any:
    """The value under `keys` (object keys only), or None where one is missing or not an object."""
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def set_in(node: Any, path: Path, value: Any) -> None:
    """Set the value at an existing `path`, in place."""
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def replaced(node: Any, replacements: Mapping[Path, Any]) -> Any:
    """`node` with the values at `replacements`' (existing) paths swapped or, for `DROP`, deleted.

    Only the containers along those paths are copied: the rest is shared with `node`, never mutated.
    """
    if () in replacements:
        return replacements[()]
    by_key: dict[str | int, dict[Path, Any]] = {}
    for path, value in replacements.items():
        by_key.setdefault(path[0], {})[path[1:]] = value
    result: Any = dict(node) if isinstance(node, dict) else list(node)
    for key, rest in by_key.items():
        value = replaced(result[key], rest)
        if value is DROP:
            del result[key]
        else:
            result[key] = value
    return result
