"""What Caddy tells about the traffic it serves: request metrics, their own listener, and the access log.

Pure; `render` calls `add_traffic_observation` last, on the config it built. Server- and app-level settings only:
no route is touched, so how hosts are dispatched stays `render`'s business.

- **Metrics** (`apps.http.metrics`): `server` counts per server; `per_host` adds a `host` label. Caddy 2.11 labels
  a request on an HTTPS server with the Host the client sent, port included (`modules/caddyhttp/metrics.go`,
  `shouldAllowHostMetrics`: every host is allowed once any server has TLS connection policies), and only the
  routes a request reaches are instrumented. So `per_host` also
  - sets `strict_sni_host` on the HTTPS server: a Host whose name is not the TLS server name is answered 421
    before any route runs, and creates no series;
  - lets a request reach the HTTPS server's routes only with no port after the name, 443 or the HTTPS port
    (a `vars_regexp` matcher on every route): strict SNI host matching compares the name alone, and
    `a.example.test:1234` would be a series of its own. Any other port matches no route: Caddy answers an empty
    200 and counts nothing (docs/caddy.md, "Traffic metrics and access logs").
  What stays unbounded: the names under a wildcard host, each a series (docs/design.md, "Traffic metrics").
- **The metrics listener**: a server of its own that answers `/metrics` with Caddy's `metrics` handler, so that
  Prometheus never needs the admin API (coretraffic's control channel, which takes `/load`).
- **The access log**: the HTTPS server's requests, JSON, to Caddy's stderr (the driver's log for a spawned Caddy,
  the container's output otherwise). `errors` is the same log at ERROR level: Caddy logs a 5xx answer at ERROR and
  anything else at INFO. Credentials (Authorization, Cookie, Set-Cookie) stay redacted: `should_log_credentials` is
  never set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from coretraffic.caddyjson.layout import ACCESS_LOG, ACCESS_LOGGER, HTTPS_SERVER, JSON, METRICS_SERVER

TrafficMetrics = Literal["off", "server", "per_host"]
AccessLog = Literal["off", "errors", "all"]

# zap's sampler: per interval, the first N entries with one message, then every Mth (all access entries share
# the message "handled request", so this bounds the lines per second whatever the traffic).
_SAMPLING_INTERVAL_NS = 1_000_000_000
_SAMPLING_FIRST = 100
# The placeholder of the Host as the client sent it, which every HTTPS route checks (`_guard_host_ports`).
HOST_PORT = "{http.request.hostport}"


@dataclass(frozen=True)
class TrafficSettings:
    metrics: TrafficMetrics = "off"
    metrics_listen: str = ""  # host:port of the metrics listener; "" none
    access_log: AccessLog = "off"
    access_log_sample: int = 1  # after the first 100 lines a second, one in N
    access_log_skip_hosts: Sequence[str] = ()


def add_traffic_observation(config: JSON, settings: TrafficSettings) -> None:
    """Set the metrics, their listener and the access log on a rendered `config` (in place)."""
    http_app = config["apps"]["http"]
    servers = http_app["servers"]
    if settings.metrics != "off":
        http_app["metrics"] = {"per_host": True} if settings.metrics == "per_host" else {}
        if settings.metrics == "per_host":
            servers[HTTPS_SERVER]["strict_sni_host"] = True
            _guard_host_ports(servers[HTTPS_SERVER]["routes"], http_app["https_port"])
        if settings.metrics_listen:
            servers[METRICS_SERVER] = _metrics_server(settings.metrics_listen)
    if settings.access_log != "off":
        _add_access_log(config, servers[HTTPS_SERVER], settings)


def _guard_host_ports(routes: list[JSON], https_port: int) -> None:
    """Each route (its every matcher set, or a new one) also requires the Host's port to be none, 443 or ours.

    On the whole Host (`hostport`), not on `{http.request.port}`: that placeholder is the port as a number, so
    `a.example.test:08000` would pass as 8000 and still be labelled a series of its own.
    """
    pattern = f"^[^:]+(?::(?:443|{https_port}))?$"  # no capture: Caddy sets a placeholder per group it captures
    for route in routes:
        route["match"] = [
            {**matchers, "vars_regexp": {HOST_PORT: {"pattern": pattern}}} for matchers in route.get("match", [{}])
        ]


def _metrics_server(listen: str) -> JSON:
    return {
        "listen": [listen],
        "automatic_https": {"disable": True},
        "protocols": ["h1"],
        "routes": [
            {"match": [{"path": ["/metrics"]}], "handle": [{"handler": "metrics"}], "terminal": True},
            {"handle": [{"handler": "static_response", "status_code": 404, "body": "only /metrics here\n"}]},
        ],
    }


def _add_access_log(config: JSON, https_server: JSON, settings: TrafficSettings) -> None:
    logs: JSON = {"default_logger_name": ACCESS_LOG}
    if settings.access_log_skip_hosts:
        logs["skip_hosts"] = sorted(settings.access_log_skip_hosts)
    https_server["logs"] = logs
    log: JSON = {
        "writer": {"output": "stderr"},
        "encoder": {"format": "json"},
        "level": "ERROR" if settings.access_log == "errors" else "INFO",
        "include": [ACCESS_LOGGER],
    }
    if settings.access_log_sample > 1:
        log["sampling"] = {
            "interval": _SAMPLING_INTERVAL_NS,
            "first": _SAMPLING_FIRST,
            "thereafter": settings.access_log_sample,
        }
    custom_logs = config.setdefault("logging", {}).setdefault("logs", {})
    custom_logs[ACCESS_LOG] = log
    # Caddy's default log takes every logger it is not told to leave out: without this each line came twice.
    default = custom_logs.setdefault("default", {})
    if not default.get("include"):
        default["exclude"] = sorted({*default.get("exclude", []), ACCESS_LOGGER})
