"""What `/metrics` says, and the apply results it and `/status` are read from.

`ApplyStats` is each reconciler's `on_result` observer: per Caddy, the outcomes, the last result and when it
came; and the expiry of the certificates of the last set (`certificate_expiry`). `DriverCollector` reads the
running parts at scrape time (so none of them depends on Prometheus): routes, applies, loads, heals, restarts,
the sources' readings, the failing upstreams read just before the scrape, the failures counted per upstream
since start (`upstream_failures`, sampled in the background) and the certificates' expiry.
Everything about one Caddy carries a `target` label.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from coretraffic import __version__
from coretraffic.core.readings import Reading
from coretraffic.core.validate import Validation
from coretraffic.observe.certificate_expiry import LoadedCertificates, certificate_metrics
from coretraffic.observe.upstream_failures import UpstreamFailures
from coretraffic.observe.view import DriverView, TargetView
from coretraffic.reconcile.reconciler import ApplyResult

# Loads take 2 ms (10 routes) to 2.4 s (10,000 routes) on a quiet box, minutes when Caddy struggles.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
HOSTS_SHOWN = 10  # per failing upstream address in /status; all of them count
_HOST_SERIES_MAX = 100  # hosts with a failing upstream labelled in /metrics: bounded, whatever fails


@dataclass
class TargetStats:
    """One Caddy's applies, as its reconciler's `on_result` observer saw them."""

    outcomes: dict[str, int] = field(default_factory=lambda: {"applied": 0, "unchanged": 0, "failed": 0})
    last: ApplyResult | None = None
    last_at: float = 0.0
    last_success_at: float = 0.0
    serving_hosts: int = 0


class ApplyStats:
    """What each reconciler's `on_result` observer learns from each apply, kept for `/metrics` and `/status`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "coretraffic_apply_duration_seconds",
            "Time from taking a route set to Caddy's final answer (rendering, loads, isolating rejected hosts)",
            labelnames=["target"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.desired_hosts = 0
        self.targets: dict[str, TargetStats] = {}
        # The certificates of the last route set's accepted hosts (the same for every Caddy of the fleet).
        self.certificates = LoadedCertificates()
        self._validation: Validation | None = None

    def observe(self, target: str, result: ApplyResult, validation: Validation) -> None:
        now = time.time()
        self.duration.labels(target).observe(result.duration_s)
        stats = self.targets.setdefault(target, TargetStats())
        stats.outcomes[result.outcome] += 1
        stats.last, stats.last_at = result, now
        self.desired_hosts = len({r.host for r in validation.routes} | {p.host for p in validation.errors})
        if validation is not self._validation:  # each Caddy of a fleet reports the same set: sorted once
            self._validation = validation
            self.certificates = LoadedCertificates.of(validation.routes)
        if result.outcome != "failed":  # a failed apply changed nothing: Caddy serves the previous set
            stats.last_success_at = now
            stats.serving_hosts = len(result.applied_hosts)

    def of(self, target: str) -> TargetStats:
        return self.targets.get(target) or TargetStats()

    def keep_only(self, targets: Iterable[str]) -> None:
        """Forget the Caddies that left the fleet: they are no longer shown."""
        for name in self.targets.keys() - set(targets):
            del self.targets[name]
            with contextlib.suppress(KeyError):
                self.duration.remove(name)


@dataclass(frozen=True)
class FailingUpstream:
    address: str  # ip:port as Caddy dials it
    fails: int  # failures Caddy currently counts against it
    hosts: tuple[str, ...]  # the hosts of the applied set that use it

    def document(self) -> dict[str, Any]:
        shown = list(self.hosts[:HOSTS_SHOWN])
        return {"address": self.address, "fails": self.fails, "hosts": shown, "hosts_total": len(self.hosts)}


class DriverCollector:
    """Metrics read from the running parts at scrape time, so the parts never depend on Prometheus."""

    def __init__(self, view: DriverView, stats: ApplyStats, failures: UpstreamFailures | None = None) -> None:
        self._view = view
        self._stats = stats
        self._failures = failures
        # Read just before each scrape, per Caddy; one whose upstreams could not be read is left out.
        self.failing_upstreams: dict[str, list[FailingUpstream]] = {}

    def collect(self) -> Iterable[Metric]:
        stats, targets = self._stats, self._view.targets
        yield InfoMetricFamily("coretraffic_build", "The running coretraffic", {"version": __version__})
        yield GaugeMetricFamily("coretraffic_caddies", "Caddies in the fleet (given and discovered)", len(targets))
        yield GaugeMetricFamily(
            "coretraffic_routes_desired", "Hosts in the last route set received", stats.desired_hosts
        )
        for name, text, gauge in _CADDY_GAUGES:
            gauges = GaugeMetricFamily(name, text, labels=["target"])
            for target in targets:
                gauges.add_metric([target.name], gauge(target, stats.of(target.name)))
            yield gauges
        for name, text, counter in _CADDY_COUNTERS:
            counters = CounterMetricFamily(name, text, labels=["target"])
            for target in targets:
                value = counter(target, stats.of(target.name))
                if value is not None:
                    counters.add_metric([target.name], value)
            yield counters
        applies = CounterMetricFamily("coretraffic_applies", "Applies by outcome", labels=["target", "outcome"])
        failures = CounterMetricFamily(
            "coretraffic_apply_failures",
            "caddy_rejected: Caddy refused a whole route set (the previous one kept serving); "
            "caddy_unavailable: a load found Caddy unreachable, timing out or answering 5xx (retried)",
            labels=["target", "reason"],
        )
        config = InfoMetricFamily("coretraffic_config", "The config marker @id Caddy was last given", labels=["target"])
        for target in targets:
            of = stats.of(target.name)
            for outcome, count in of.outcomes.items():
                applies.add_metric([target.name, outcome], count)
            failures.add_metric([target.name, "caddy_rejected"], of.outcomes["failed"])
            failures.add_metric([target.name, "caddy_unavailable"], target.retries)
            if target.applied_marker is not None:
                config.add_metric([target.name], {"config_id": target.applied_marker})
        yield from (applies, failures, config)
        for source in self._view.sources:
            yield from map(_metric, source.readings())
        yield from map(_metric, self._view.serving.readings())
        yield from _failing_upstream_metrics(self.failing_upstreams)
        if self._failures is not None:
            yield from _upstream_failure_metrics(self._failures)
        yield from certificate_metrics(stats.certificates, time.time())


def _behind_s(target: TargetView) -> float:
    behind = target.behind_since
    return 0.0 if behind is None else time.monotonic() - behind


# Per Caddy, labelled `target`: name, help, value.
_CADDY_GAUGES: tuple[tuple[str, str, Callable[[TargetView, TargetStats], float]], ...] = (
    ("coretraffic_routes_applied", "Hosts Caddy was last told to serve", lambda _, of: of.serving_hosts),
    (
        "coretraffic_routes_rejected",
        "Hosts of the last route set left out (invalid, or refused by Caddy)",
        lambda _, of: len({p.host for p in of.last.rejected}) if of.last else 0,
    ),
    (
        "coretraffic_last_successful_apply_timestamp_seconds",
        "Unix time of the last apply after which Caddy ran the route set (0: none yet)",
        lambda _, of: of.last_success_at,
    ),
    (
        "coretraffic_caddy_behind_seconds",
        "Seconds for which the Caddy has not run the latest route set given to it (0: it runs it)",
        lambda target, _: _behind_s(target),
    ),
)
_CADDY_COUNTERS: tuple[tuple[str, str, Callable[[TargetView, TargetStats], float | None]], ...] = (
    ("coretraffic_caddy_loads", "Configs Caddy accepted through /load", lambda target, _: target.loads),
    (
        "coretraffic_caddy_heals",
        "Re-applies after Caddy lost the applied config (restarted, emptied or edited by hand)",
        lambda target, _: target.heals,
    ),
    (
        "coretraffic_caddy_restarts",
        "Times the spawned Caddy exited and was started again (spawned Caddies only)",
        lambda target, _: target.restarts,
    ),
)


def _failing_upstream_metrics(failing: dict[str, list[FailingUpstream]]) -> Iterable[Metric]:
    count = GaugeMetricFamily(
        "coretraffic_failing_upstreams",
        "Upstream addresses Caddy currently counts failures against (out of the selection for the fail duration)",
        labels=["target"],
    )
    by_host = GaugeMetricFamily(
        "coretraffic_host_failing_upstreams",
        f"Failing upstream addresses per host (per Caddy, the {_HOST_SERIES_MAX} hosts with most)",
        labels=["target", "host"],
    )
    for target, upstreams in failing.items():
        count.add_metric([target], len(upstreams))
        per_host = collections.Counter(host for upstream in upstreams for host in upstream.hosts)
        for host, hosts in sorted(per_host.items(), key=lambda item: (-item[1], item[0]))[:_HOST_SERIES_MAX]:
            by_host.add_metric([target, host], hosts)
    yield from (count, by_host)


def _upstream_failure_metrics(failures: UpstreamFailures) -> Iterable[Metric]:
    """The longer-lived signal (`upstream_failures`): per upstream that failed, how often and when last."""
    total = CounterMetricFamily(
        "coretraffic_upstream_failures",
        "Failures Caddy counted against the upstream address since the driver started (sampled from its passive "
        "health count, which forgets each after the fail duration; a lower bound)",
        labels=["target", "upstream"],
    )
    last = GaugeMetricFamily(
        "coretraffic_upstream_last_failure_timestamp_seconds",
        "Unix time of the last sample at which Caddy counted a failure against the upstream address",
        labels=["target", "upstream"],
    )
    for target, records in failures.targets.items():
        for address, record in records.items():
            total.add_metric([target, address], record.failures)
            last.add_metric([target, address], record.last_failure_at)
    yield from (total, last)


def _metric(reading: Reading) -> Metric:
    kind = GaugeMetricFamily if reading.kind == "gauge" else CounterMetricFamily
    return kind(reading.name, reading.help, value=reading.value)
