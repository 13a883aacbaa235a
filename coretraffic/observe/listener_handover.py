"""`net.ipv4.tcp_migrate_req`: whether the kernel hands queued connections over when Caddy reloads.

Every reload binds new listening sockets (SO_REUSEPORT) and closes the old ones; without the sysctl, connections
still in the old socket's accept queue or mid-handshake are reset (docs/caddy.md, "Reloads and new connections").
It is one value per network namespace: the driver reads its own, once at start, only when it spawns its Caddy
(which then listens in that namespace), shows it in `/status`, `coretraffic status` and `/metrics`, and warns once
when it is off. A driver that spawns no Caddy (Swarm's gates, Kubernetes) cannot read the Caddies' namespaces and
reports "unknown" (`app.service`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger("coretraffic.kernel")

TCP_MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")

MigrateReq = Literal["on", "off", "unknown"]

# For the metric: Prometheus has no "unknown", so -1 stands for a kernel that does not say (older than 5.14,
# or /proc not mounted).
METRIC_VALUES: dict[MigrateReq, int] = {"on": 1, "off": 0, "unknown": -1}


def read_tcp_migrate_req(path: Path = TCP_MIGRATE_REQ) -> MigrateReq:
    """The sysctl's value in this network namespace; "unknown" when the file is missing or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    if text == "1":
        return "on"
    if text == "0":
        return "off"
    return "unknown"


class MigrateReqCollector:
    """`coretraffic_tcp_migrate_req` for `/metrics`: 1 on, 0 off, -1 unknown (read once at start)."""

    def __init__(self, value: MigrateReq) -> None:
        self._value = value

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "coretraffic_tcp_migrate_req",
            "net.ipv4.tcp_migrate_req of the network namespace shared with Caddy: 1 on (a reload hands queued "
            "connections to the new listener), 0 off (they are reset), -1 unknown",
            value=METRIC_VALUES[self._value],
        )


def warn_when_off(value: MigrateReq) -> None:
    if value == "off":
        log.warning(
            "net.ipv4.tcp_migrate_req is 0 in this network namespace: every Caddy reload resets the connections "
            "waiting in its old listener's queue; set it to 1 (pod securityContext.sysctls, docker --sysctl)"
        )
