"""Metric readings: how a part of the loop reports a number about itself without knowing Prometheus.

Route sources make them (`sources`), the status server turns them into Prometheus metrics (`observe`). Here, at the
bottom, so that those two sibling packages share the type without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Reading:
    name: str  # as exposed: a counter's name ends in `_total`
    help: str
    kind: Literal["gauge", "counter"]
    value: float
