"""The fleet bed: three Caddies as three pods (each in a network namespace of its own, admin over a unix socket),
a file with the demo CA for requests made inside the pods, and a free status port. Thin wrappers around
tests/support/pods.py, which says how the pods are made and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coretraffic.testing.pki import DemoCA
from tests.support.pods import Pod, require_root, write_ca
from tests.support.ports import free_port


@pytest.fixture
def pods(short_tmp: Path) -> Iterator[list[Pod]]:
    require_root()
    made = [Pod(short_tmp / f"pod{i}") for i in range(3)]
    try:
        for pod in made:
            pod.start()
        yield made
    finally:
        for pod in made:
            pod.remove()


@pytest.fixture
def ca_file(ca: DemoCA, short_tmp: Path) -> Path:
    return write_ca(ca, short_tmp)


@pytest.fixture
def status_port() -> int:
    return free_port()
