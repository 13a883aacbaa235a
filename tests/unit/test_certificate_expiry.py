"""Unit tests of `coretraffic.observe.certificate_expiry`: counts at the edges of each window, every expired
certificate shown, the soonest others after them, and the per-host gauge as a Unix time."""

from __future__ import annotations

from coretraffic.observe.certificate_expiry import LoadedCertificates, certificate_metrics, certificates_document

NOW = 1_900_000_000.0
DAY = 86_400.0


def loaded(**days: float) -> LoadedCertificates:
    """Hosts `a`, `b`, ... whose certificates expire the given number of days from NOW."""
    return LoadedCertificates(tuple(sorted((NOW + d * DAY, f"{host}.example.test") for host, d in days.items())))


def test_counts_each_window_and_leaves_the_expired_out_of_them() -> None:
    certificates = loaded(gone=-3, now=0, week=7, ten=10, fortnight=14, month=29.9, later=31, far=400)
    assert [h for _, h in certificates.expired(NOW)] == ["gone.example.test", "now.example.test"]
    assert [certificates.expiring_within(d, NOW) for d in (7, 14, 30)] == [1, 3, 4]


def test_status_shows_every_expired_certificate_and_the_soonest_others() -> None:
    certificates = loaded(**{f"old{i}": -i - 1 for i in range(8)}, ten=10, **{f"h{i}": 100 + i for i in range(9)})
    document = certificates_document(certificates, NOW)
    assert document["loaded"] == 18
    assert len(document["expired"]) == 8 and document["expired"][0]["host"] == "old7.example.test"
    assert [e["host"] for e in document["soonest"]][:2] == ["ten.example.test", "h0.example.test"]
    assert len(document["soonest"]) == 5
    assert document["soonest"][0]["days_left"] == 10.0
    assert document["expiring_within_days"] == {"7": 0, "14": 1, "30": 1}


def test_metrics_carry_each_hosts_expiry_as_a_unix_time() -> None:
    metrics = {m.name: m for m in certificate_metrics(loaded(a=10, b=-1), NOW)}
    per_host = {
        s.labels["host"]: s.value for s in metrics["coretraffic_certificate_not_after_timestamp_seconds"].samples
    }
    assert per_host == {"a.example.test": NOW + 10 * DAY, "b.example.test": NOW - DAY}
    assert metrics["coretraffic_certificates_expired"].samples[0].value == 1
    soonest = metrics["coretraffic_certificate_soonest_not_after_timestamp_seconds"].samples[0].value
    assert soonest == NOW - DAY
    within = {s.labels["within_days"]: s.value for s in metrics["coretraffic_certificates_expiring"].samples}
    assert within == {"7": 0, "14": 1, "30": 1}


def test_no_certificate_no_soonest_series() -> None:
    names = {m.name for m in certificate_metrics(LoadedCertificates(), NOW)}
    assert "coretraffic_certificate_soonest_not_after_timestamp_seconds" not in names
    assert "coretraffic_certificates_expired" in names
