"""Small pieces of wording shared by every message a person reads."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str = "") -> str:
    """`1 host`, `2 hosts`: a count with its noun, singular for one (`plural` when adding an s will not do)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
