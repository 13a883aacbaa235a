"""A driver's status server as a test reads it: pages, the `/status` document and `/metrics` as samples."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Status:
    """HTTP to a driver's status server on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(f"http://{self.address}{path}")

    async def code(self, path: str) -> int:
        try:
            return (await self.get(path)).status_code
        except httpx.TransportError:
            return 0

    async def document(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self.get("/status")).json()
        return result

    async def metrics(self) -> dict[str, float]:
        """Every sample by name and labels, e.g. `coretraffic_applies_total{outcome="applied"}`."""
        text = (await self.get("/metrics")).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
        return samples

    async def metric(self, name: str) -> float | None:
        return (await self.metrics()).get(name)
