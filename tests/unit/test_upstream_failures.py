"""`observe.upstream_failures`: a failure counter per upstream kept from samples of Caddy's passive health count.

Caddy's count is simulated exactly as Caddy keeps it (each failure counted for `fail_duration`, then forgotten:
`countFailure` in reverseproxy), sampled at the driver's interval with jitter; the real Caddy is in
`tests/system/test_status.py`.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coretraffic.observe.upstream_failures import MAX_TRACKED, UpstreamFailures, sample_interval

FAIL_DURATION = 5.0
ADDRESS = "10.0.0.7:8080"


def caddy_count(failures: list[float], at: float) -> int:
    """What `GET /reverse_proxy/upstreams` says as `fails` at `at`: the failures of the last fail duration."""
    return sum(1 for moment in failures if at - FAIL_DURATION < moment <= at)


def sampled(failures: list[float], until: float, seed: int = 0) -> UpstreamFailures:
    rnd = random.Random(seed)
    counter = UpstreamFailures(FAIL_DURATION)
    interval = sample_interval(FAIL_DURATION)
    at = rnd.uniform(0, interval)
    while at < until:
        counter.sample("caddy", [{"address": ADDRESS, "fails": caddy_count(failures, at), "hosts": ["a.test"]}], at)
        at += interval * rnd.uniform(0.8, 1.0)  # a sample may come early (the loop's own work), never late here
    return counter


def counted(counter: UpstreamFailures) -> int:
    record = counter.of("caddy").get(ADDRESS)
    return record.failures if record else 0


@given(st.lists(st.floats(0, 300), max_size=60), st.integers(0, 1000))
def test_the_count_never_exceeds_the_failures(failures: list[float], seed: int) -> None:
    assert counted(sampled(failures, 320, seed)) <= len(failures)


@given(
    st.lists(st.floats(sample_interval(FAIL_DURATION), 30), min_size=1, max_size=40, unique=True),
    st.integers(0, 1000),
)
def test_failures_a_fail_duration_apart_are_each_counted(gaps: list[float], seed: int) -> None:
    """The quiet host behind a dead upstream: a request now and then, each one failing. Apart by a fail duration
    and a sample interval at least: closer, a sample may see the second failure in the same reading in which the
    first is forgotten, and count one (the counter is a lower bound; hypothesis found gaps of 0 to 0.5 s)."""
    failures, at = [], 1.0
    for gap in gaps:
        at += FAIL_DURATION + gap
        failures.append(at)
    assert counted(sampled(failures, at + 2 * FAIL_DURATION, seed)) == len(failures)


def test_a_steady_stream_of_failures_keeps_counting_while_caddys_count_stays_flat() -> None:
    """A dead upstream under steady traffic: Caddy's count sits at a plateau; the counter still grows, as a lower
    bound (995 of 1,199 counted here: failures hidden behind others that Caddy forgot between two samples)."""
    failures = [t * 0.5 for t in range(1, 1200)]  # one every 0.5 s for 10 minutes
    total = counted(sampled(failures, 600))
    assert 0.75 * len(failures) <= total <= len(failures), total


def test_the_last_failure_outlives_caddys_count_and_the_address_leaves_with_its_hosts() -> None:
    counter = sampled([10.0], until=60)
    record = counter.of("caddy")[ADDRESS]
    assert record.failures == 1
    assert 10.0 <= record.last_failure_at < 10.0 + FAIL_DURATION  # the last sample that still saw it
    assert record.hosts == ("a.test",)
    counter.sample("caddy", [{"address": "10.0.0.8:8080", "fails": 0}], 61)
    assert counter.of("caddy") == {}  # its hosts were removed from Caddy's config


def test_an_upstream_that_never_failed_has_no_series_and_the_series_are_bounded() -> None:
    counter = UpstreamFailures(FAIL_DURATION)
    listed = [
        {"address": f"10.0.{i // 250}.{i % 250}:80", "fails": 1 if i % 2 else 0} for i in range(2 * MAX_TRACKED + 10)
    ]
    counter.sample("caddy", listed, 1.0)
    assert len(counter.of("caddy")) == MAX_TRACKED
    assert all(record.failures == 1 for record in counter.of("caddy").values())
    counter.keep_only([])
    assert counter.targets == {}


@pytest.mark.parametrize(("fail_duration", "interval"), [(5, 5 / 3), (0.1, 0.5), (3600, 30)])
def test_the_sampling_interval(fail_duration: float, interval: float) -> None:
    assert sample_interval(fail_duration) == pytest.approx(interval)
