"""Failures per upstream that outlive Caddy's fail duration: a counter and the time of the last one.

Caddy's passive health check counts a failure against an upstream address for `fail_duration` (5 s by default)
and then forgets it (`GET /reverse_proxy/upstreams`: `fails`). Read at scrape time, as
`coretraffic_failing_upstreams` is, a dead container behind a quiet host shows for 5 s after each request and is
0 the rest of the time: an alert on it "for minutes" flaps or never fires. Caddy keeps no running total, so the
driver samples the count often enough to see each failure before it is forgotten and keeps one itself.

Counting from samples: a failure stays in Caddy's count for exactly `fail_duration`, so one seen first at sample
time `s` happened after the sample before and is certainly forgotten by `s + fail_duration`. At each sample,
what the count holds beyond the failures seen earlier and possibly still counted is new. That is a lower bound:
a failure forgotten before it could be seen, or hidden behind an earlier one forgotten unseen, is missed; with
samples less than a third of the fail duration apart (`sample_interval`) a hidden one is mostly seen at the next
sample. Failures at least a fail duration apart (a quiet host behind a dead upstream) are each counted; a steady
stream of them is counted to about 83% (`tests/unit/test_upstream_failures.py`). The time of the last failure
is that of the last sample at which Caddy counted any: at most one fail duration after the failure itself.

Only upstreams that failed get a series, at most MAX_TRACKED per Caddy (those that failed last); an address
that leaves Caddy's list (its hosts were removed) leaves with it, and so does a Caddy that leaves the fleet.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coretraffic.errors import CaddyRejected, CaddyUnavailable
from coretraffic.observe.view import DriverView

log = logging.getLogger("coretraffic.status")

MAX_TRACKED = 1000  # upstream addresses with a series, per Caddy
_SAMPLE_TIMEOUT_S = 5.0


def sample_interval(fail_duration_s: float) -> float:
    """A third of the fail duration (see the module's docstring), not more often than every 0.5 s nor less than
    every 30 s."""
    return min(30.0, max(0.5, fail_duration_s / 3))


@dataclass
class UpstreamRecord:
    """What the driver has seen of one upstream address at one Caddy."""

    failures: int = 0  # counted since the driver started
    last_failure_at: float = 0.0  # Unix time of the last sample at which Caddy counted a failure; 0: none yet
    hosts: tuple[str, ...] = ()  # the hosts of the applied set that use it, at the last sample
    # Failures counted and possibly still in Caddy's count, oldest first: (sample time, how many).
    _recent: collections.deque[tuple[float, int]] = field(default_factory=collections.deque, repr=False)


class UpstreamFailures:
    """The failure counts of every Caddy's upstreams, kept from samples of Caddy's passive health count."""

    def __init__(self, fail_duration_s: float) -> None:
        self.fail_duration_s = fail_duration_s
        self.targets: dict[str, dict[str, UpstreamRecord]] = {}

    def sample(self, target: str, listed: Sequence[dict[str, Any]], at: float) -> None:
        """Take one reading of `GET /reverse_proxy/upstreams` (`address`, `fails`, `hosts`) made at Unix time `at`."""
        records = self.targets.setdefault(target, {})
        present = set()
        for upstream in listed:
            address, fails = str(upstream.get("address")), int(upstream.get("fails") or 0)
            present.add(address)
            record = records.get(address)
            if record is None:
                if fails <= 0:
                    continue
                record = records[address] = UpstreamRecord()
            self._count(record, fails, at)
            record.hosts = tuple(upstream.get("hosts", ()))
        for address in records.keys() - present:  # no longer in Caddy's config
            del records[address]
        if len(records) > MAX_TRACKED:
            for address, _ in sorted(records.items(), key=lambda item: item[1].last_failure_at)[:-MAX_TRACKED]:
                del records[address]

    def _count(self, record: UpstreamRecord, fails: int, at: float) -> None:
        recent = record._recent
        while recent and recent[0][0] + self.fail_duration_s <= at:  # certainly forgotten by Caddy
            recent.popleft()
        still = sum(count for _, count in recent)
        if fails > still:
            record.failures += fails - still
            recent.append((at, fails - still))
        else:  # some of those seen earlier are forgotten already: the oldest ones
            surplus = still - fails
            while surplus > 0 and recent:
                seen_at, count = recent.popleft()
                if count > surplus:
                    recent.appendleft((seen_at, count - surplus))
                surplus -= count
        if fails > 0:
            record.last_failure_at = at

    def keep_only(self, targets: Iterable[str]) -> None:
        """Forget the Caddies that left the fleet."""
        for name in self.targets.keys() - set(targets):
            del self.targets[name]

    def of(self, target: str) -> dict[str, UpstreamRecord]:
        return self.targets.get(target, {})


async def sample_forever(view: DriverView, failures: UpstreamFailures, interval_s: float) -> None:
    """Sample every Caddy's upstreams every `interval_s` until cancelled. A Caddy that does not answer is skipped
    (its failures are not lost: Caddy still counts them at the next sample, within the fail duration)."""
    while True:
        targets = view.targets
        failures.keep_only(t.name for t in targets)
        for target in targets:
            with contextlib.suppress(TimeoutError, CaddyUnavailable, CaddyRejected):
                async with asyncio.timeout(_SAMPLE_TIMEOUT_S):
                    listed = await target.upstreams()
                failures.sample(target.name, listed, time.time())
        await asyncio.sleep(interval_s)
