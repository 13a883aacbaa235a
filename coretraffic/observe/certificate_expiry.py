"""When the certificates the driver loads expire: for `/metrics`, `/status` and `coretraffic status`.

Computed by the driver from what it loads (each accepted host's leaf, as validation parsed it), not asked of
Caddy: Caddy exports no certificate metric (caddyserver/caddy#1683), and the driver knows every certificate it
hands over. The per-host gauge follows ingress-nginx's `ssl_expire_time_seconds` and cert-manager's
`certmanager_certificate_expiration_timestamp_seconds`: a Unix timestamp, so an alert compares it with `time()`
and the value does not change between scrapes.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from coretraffic.core.validate import Route

WITHIN_DAYS = (7, 14, 30)  # the windows counted: a week to act, the usual alert, a month to plan
SOONEST_SHOWN = 5  # in /status and `coretraffic status`; every expired one is shown besides
_DAY_S = 86_400.0


@dataclass(frozen=True)
class LoadedCertificates:
    """Each accepted host's certificate expiry as a Unix time, soonest first."""

    expiries: tuple[tuple[float, str], ...] = ()

    @classmethod
    def of(cls, routes: Iterable[Route]) -> LoadedCertificates:
        return cls(tuple(sorted((r.certificate.not_after.timestamp(), r.host) for r in routes)))

    def expired(self, now: float) -> Sequence[tuple[float, str]]:
        return self.expiries[: bisect.bisect_right(self.expiries, (now, "\U0010ffff"))]

    def expiring_within(self, days: int, now: float) -> int:
        """Certificates not expired yet that expire within `days` days."""
        return bisect.bisect_right(self.expiries, (now + days * _DAY_S, "\U0010ffff")) - len(self.expired(now))


def certificates_document(loaded: LoadedCertificates, now: float) -> dict[str, Any]:
    """The `certificates` section of `/status`: counts, every expired certificate and the soonest others."""
    expired = loaded.expired(now)
    return {
        "loaded": len(loaded.expiries),
        "expired": [_entry(at, host, now) for at, host in expired],
        "soonest": [_entry(at, host, now) for at, host in loaded.expiries[len(expired) : len(expired) + SOONEST_SHOWN]],
        "expiring_within_days": {str(days): loaded.expiring_within(days, now) for days in WITHIN_DAYS},
    }


def _entry(not_after: float, host: str, now: float) -> dict[str, Any]:
    return {
        "host": host,
        "not_after": datetime.datetime.fromtimestamp(not_after, datetime.UTC).isoformat(timespec="seconds"),
        "days_left": round((not_after - now) / _DAY_S, 1),
    }


def certificate_metrics(loaded: LoadedCertificates, now: float) -> Iterable[Metric]:
    per_host = GaugeMetricFamily(
        "coretraffic_certificate_not_after_timestamp_seconds",
        "Unix time at which the certificate loaded for a host expires (its leaf's notAfter)",
        labels=["host"],
    )
    for not_after, host in loaded.expiries:
        per_host.add_metric([host], not_after)
    yield per_host
    yield GaugeMetricFamily(
        "coretraffic_certificates_loaded",
        "Certificates of the hosts accepted from the last route set",
        len(loaded.expiries),
    )
    yield GaugeMetricFamily(
        "coretraffic_certificates_expired", "Loaded certificates past their notAfter", len(loaded.expired(now))
    )
    expiring = GaugeMetricFamily(
        "coretraffic_certificates_expiring",
        "Loaded certificates not expired yet that expire within the given number of days",
        labels=["within_days"],
    )
    for days in WITHIN_DAYS:
        expiring.add_metric([str(days)], loaded.expiring_within(days, now))
    yield expiring
    if loaded.expiries:
        yield GaugeMetricFamily(
            "coretraffic_certificate_soonest_not_after_timestamp_seconds",
            "Unix time at which the first of the loaded certificates expires",
            loaded.expiries[0][0],
        )
