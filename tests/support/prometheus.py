"""A real Prometheus (Debian's `prometheus` package, installed by .ci/run) on loopback with a temp dir, and the
queries coretraffic ships: every panel and annotation of the Grafana dashboard and every alert expression, with
the dashboard's variables filled in as Grafana would (all hosts, a rate window that spans a few scrapes)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.paths import REPO
from tests.support.ports import free_port

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "coretraffic.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SINGLE_SCRAPE = DEPLOY / "prometheus" / "scrape-single.yml"
# Grafana's variables as the queries are run here: every host; windows of several 1 s scrapes.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "5m", "$host": ".*"}
# Names a query may use that are not series (PromQL's functions and keywords are followed by "(" or are not
# prefixed like ours): only identifiers shaped like our metrics are checked against what is exported.
_METRIC_NAME = re.compile(r"\b((?:caddy|coretraffic)_[a-zA-Z0-9_]+)\b")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def binary(name: str) -> str:
    """A Prometheus binary, or skip (fail in CI: .ci/run installs the package)."""
    found = shutil.which(name)
    if found is None:
        missing = f"{name} is needed: apt-get install -y prometheus (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return found


@dataclass(frozen=True)
class Query:
    where: str  # "panel <title>", "annotation <name>" or "alert <name>"
    expr: str


def dashboard_queries() -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        Query(f"panel {panel['title']} {target['refId']}", _filled(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    queries += [
        Query(f"annotation {a['name']}", _filled(a["target"]["expr"])) for a in dashboard["annotations"]["list"]
    ]
    return queries


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def _filled(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def unexported(expr: str, exported: set[str]) -> set[str]:
    """The metric names `expr` uses that no target exports (a histogram's `_bucket`/`_count`/`_sum` included)."""
    outside_strings = _STRING.sub('""', expr)  # label values such as server="coretraffic_https" are not names
    return set(_METRIC_NAME.findall(outside_strings)) - exported


def loopback_config(driver_port: int, caddy_port: int) -> dict[str, Any]:
    """The shipped single-Caddy scrape config (its jobs, relabelling and rule file) pointed at the test's loopback
    ports, scraped and evaluated every second."""
    config: dict[str, Any] = yaml.safe_load(SINGLE_SCRAPE.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
    config["rule_files"] = [str(ALERTS)]
    ports = {"coretraffic": driver_port, "coretraffic-caddy": caddy_port}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    return config


class Prometheus:
    """`prometheus` on a free loopback port with its TSDB in `directory`, until `stop`."""

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.port = free_port()
        config_file = directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    async def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.process.stderr.read() if self.process.stderr else ''}")
        try:
            return (await self._client.get("/-/ready")).status_code == 200
        except httpx.TransportError:
            return False

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` gives now (an AssertionError with Prometheus's reason for a bad query)."""
        response = await self._client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def metric_names(self) -> set[str]:
        body = (await self._client.get("/api/v1/label/__name__/values")).json()
        return set(body["data"])

    async def targets_up(self) -> bool:
        return len(await self.query("up == 1")) == 2

    async def stop(self) -> None:
        await self._client.aclose()
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
