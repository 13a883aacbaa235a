"""Validation of a mostly new route set spread over the machine's cores: one-shot commands and `run`'s first set.

Validating 10,000 new hosts is about 1 s of PEM parsing in one process (9 s of CPU at 100,000), and the one-shot
commands (`diff`, `check`, `render`) start cold every time, as does `run` with its first set. So a set of which
enough configs are new forks workers that each check a slice (`validate.validate_configs`) and send back the
outcomes; the caller assembles them (`validate.assemble`: the first config for a host wins), so the result is
exactly what `validate_route_set` gives, and keeps them (`validate.keep_results`), so that the next set finds
its unchanged hosts as if they had been validated here. Forked, not spawned: a worker inherits the imports and
the parsed route set instead of paying for them again.

A set whose configs are mostly known (every later set `run` gets, or one whose pairs a `CheckedPairsFile`
holds) is validated in a thread: its results are found in the cache, which is cheaper than forking and sending
100,000 routes back. The fork is made from the event loop's thread; `run`'s other threads are the loop's
executor's (idle while a set is validated: intake is the one user), and a worker touches nothing but the configs
and the validation caches.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

from coretraffic.core.models import route_set_items
from coretraffic.core.trust import TrustedRoots
from coretraffic.core.validate import (
    Outcomes,
    Validation,
    assemble,
    keep_results,
    known,
    validate_configs,
    validate_route_set,
)
from coretraffic.sources.checked_pairs_file import CheckedPairsFile

# Configs per slice: below about this many, a worker costs more than it saves. Several slices per worker even
# out a worker that the (shared) machine slows down.
MIN_SLICE = 500
SLICES_PER_WORKER = 4
# How many configs are looked up to tell how much of a set is new.
SAMPLE = 1000
# A container's CPU quota often hides behind a larger affinity mask: more workers would only share the same CPU
# time, each with its own copy of the pages it touches.
MAX_WORKERS = 4

_configs: Sequence[Any] = ()  # in a worker: the route set, inherited through the fork rather than pickled


async def validate_on_cores(
    document: Any,
    now: datetime,
    *,
    record: CheckedPairsFile | None = None,
    roots: TrustedRoots | None = None,
    min_slice: int = MIN_SLICE,
) -> Validation:
    """`validate_route_set(document, now, roots)`, on up to MAX_WORKERS of the usable cores when enough of it is new.

    With a `record`, the pairs it holds are not checked again (`CheckedPairsFile.recall`).
    """
    configs = route_set_items(document)
    if record is not None:
        await asyncio.to_thread(record.recall, configs)
    workers = min(_usable_cores(), MAX_WORKERS, _new_configs(configs) // min_slice)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return await asyncio.to_thread(validate_route_set, configs, now, roots)
    size = max(min_slice, -(-len(configs) // (workers * SLICES_PER_WORKER)))
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_inherit, initargs=(configs,)
    )
    with pool:
        try:  # a worker killed (out of memory, a signal) breaks the pool, and even submitting then fails
            slices = [
                loop.run_in_executor(pool, _validate_slice, i, size, now, roots) for i in range(0, len(configs), size)
            ]
            parts = await asyncio.gather(*slices)
        except BrokenProcessPool:  # do the work here instead
            return await asyncio.to_thread(validate_route_set, configs, now, roots)
    outcomes = Outcomes()
    for part in parts:
        outcomes.extend(part)
    keep_results(configs, outcomes)
    return assemble(outcomes)


def _new_configs(configs: Sequence[Any]) -> int:
    """About how many of `configs` are not known to the validation cache, from an even sample of them."""
    step = max(1, len(configs) // SAMPLE)
    sample = configs[::step]
    return len(configs) * sum(not known(config) for config in sample) // max(1, len(sample))


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _inherit(configs: Sequence[Any]) -> None:
    global _configs
    _configs = configs
    # Ctrl-C is the caller's to handle; the forked copy of its asyncio handler would wake the caller's loop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)


def _validate_slice(first: int, size: int, now: datetime, roots: TrustedRoots | None) -> Outcomes:
    return validate_configs(_configs[first : first + size], now, first, roots)
