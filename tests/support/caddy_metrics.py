"""Caddy's own `/metrics`, read from its metrics listener and parsed with prometheus-client's parser: the request
series by their labels, for tests that check what a client's requests created."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def caddy_metrics_text(port: int) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


def label_values(text: str, metric: str, label: str) -> set[str]:
    """Every value of `label` among the samples of `metric` (a family name, such as `caddy_http_requests`)."""
    return {
        sample.labels[label]
        for family in text_string_to_metric_families(text)
        if family.name == metric
        for sample in family.samples
        if label in sample.labels
    }


def sample_value(text: str, sample_name: str, **labels: str) -> float:
    """The sum of the samples named `sample_name` whose labels include `labels` (0 when none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )
