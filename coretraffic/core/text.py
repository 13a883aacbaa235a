"""Small pieces of wording shared by every message a person reads."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str = "") -> str:
    """`1 host`, `2 hosts`: a count with its noun, singular for one (`plural` when adding an s will not do)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def printable(text: str, limit: int = 80) -> str:
    """`text` as it may be quoted back in a message: escaped to ASCII, and cut at `limit` characters (a hostile
    input may be megabytes long)."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."
