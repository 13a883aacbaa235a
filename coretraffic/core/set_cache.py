"""A cache that holds the results of the route set being validated and of the set before it."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SetCache(Generic[K, T]):
    """Results of the configs of the route set being validated and of the set before it, by content.

    Coreflow resends every unchanged host with every update, so a result is wanted again by the next set or not
    at all. Two sets' worth holds every host's result whatever the set's size, and lets go of hosts that left; a
    fixed-size LRU smaller than the set evicts each entry just before the next set asks for it (16,384 entries
    made every set of 30,000 hosts validate cold). A failed check (an exception) is not kept.
    """

    def __init__(self) -> None:
        self._current: dict[K, T] = {}
        self._previous: dict[K, T] = {}

    def get(self, key: K, compute: Callable[[K], T]) -> T:
        if key in self._current:
            return self._current[key]
        value = self._previous.pop(key) if key in self._previous else compute(key)
        self._current[key] = value
        return value

    def holds(self, key: K) -> bool:
        return key in self._current or key in self._previous

    def keep(self, key: K, value: T) -> None:
        """`value` for `key` in this set, unless the set has one already (the first config for a host wins)."""
        self._previous.pop(key, None)
        self._current.setdefault(key, value)

    def current(self) -> list[tuple[K, T]]:
        """The results the set being validated has asked for or been given so far (a copy: another thread may
        be validating)."""
        return list(self._current.items())

    def next_set(self) -> None:
        """A new route set begins: what the last one did not ask for again is let go."""
        self._previous, self._current = self._current, {}
