"""`coretraffic.sources.parallel`: validation spread over forked workers gives exactly what `validate_route_set` gives.

Real worker processes (fork); `min_slice` is lowered so that a set of a few dozen configs is split.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
from typing import Any

import pytest

from coretraffic.core.trust import TrustedRoots
from coretraffic.core.validate import validate_route_set
from coretraffic.errors import RouteSetError
from coretraffic.sources import parallel
from coretraffic.testing.pki import DemoCA, PublicLikeCA, demo_route, route_config

NOW = datetime.datetime.now(datetime.UTC)

pytestmark = pytest.mark.skipif(parallel._usable_cores() < 2, reason="needs two cores to fork workers")


@pytest.fixture
def mixed_set() -> list[Any]:
    """Good hosts, with rejected configs and duplicates spread over every slice (positions matter in messages)."""
    ca = DemoCA("parallel test CA")
    configs: list[Any] = []
    for i in range(60):
        config = demo_route(ca, f"h{i}.example.test", 9000 + i)
        if i % 7 == 3:
            config["destinationPorts"] = [0]
        if i % 11 == 5:
            config = {"destinationIps": ["10.0.0.1"]}  # no hostName: named by its position
        configs.append(config)
    configs += [configs[2], demo_route(ca, "H2.example.test", 1)]  # duplicates of an early host, both ignored
    return configs


def test_workers_give_the_same_validation_as_one_process(mixed_set: list[Any]) -> None:
    serial = validate_route_set(mixed_set, NOW)
    assert any(p.host.startswith("#") for p in serial.problems) and any(
        "duplicate" in p.message for p in serial.warnings
    )
    forget_earlier_sets()  # or the set is known, and validated without workers
    spread = asyncio.run(parallel.validate_on_cores(mixed_set, NOW, min_slice=5))
    assert spread == serial
    assert all(a is not b for a, b in zip(spread.routes, serial.routes, strict=True))  # made by the workers


def forget_earlier_sets() -> None:
    """Validation keeps the results of the last set and the one before: two empty sets let go of everything."""
    validate_route_set([], NOW)
    validate_route_set([], NOW)


def test_what_workers_validated_is_known_to_the_next_set(mixed_set: list[Any]) -> None:
    spread = asyncio.run(parallel.validate_on_cores(mixed_set, NOW, min_slice=5))
    again = validate_route_set([dict(config) for config in mixed_set], NOW)
    assert again == spread
    assert all(a is b for a, b in zip(again.routes, spread.routes, strict=True))  # found, not validated again


def test_a_known_set_is_validated_here_without_workers() -> None:
    ca = DemoCA("parallel test CA")
    good = [demo_route(ca, f"h{i}.example.test", 9000 + i) for i in range(30)]  # rejected ones are never known
    known = validate_route_set(good, NOW)
    again = asyncio.run(parallel.validate_on_cores(good, NOW, min_slice=5))
    assert all(a is b for a, b in zip(again.routes, known.routes, strict=True))  # workers would send copies


def test_reverse_configs_object_and_its_errors_are_as_in_validate(mixed_set: list[Any]) -> None:
    spread = asyncio.run(parallel.validate_on_cores({"reverseConfigs": mixed_set}, NOW, min_slice=5))
    assert spread == validate_route_set(mixed_set, NOW)
    with pytest.raises(RouteSetError):
        asyncio.run(parallel.validate_on_cores({"routes": []}, NOW, min_slice=5))


def _die(first: int, size: int, now: datetime.datetime, roots: TrustedRoots | None) -> None:
    os._exit(3)  # a worker killed mid-slice (out of memory, a signal)


def test_a_killed_worker_costs_time_not_the_result(mixed_set: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_validate_slice", _die)
    spread = asyncio.run(parallel.validate_on_cores(mixed_set, NOW, min_slice=5))
    assert spread == validate_route_set(mixed_set, NOW)


def test_workers_judge_chains_against_the_roots_they_are_given() -> None:
    """The trust store reaches the forked workers: a chain without its intermediate is warned about there too."""
    public = PublicLikeCA("parallel chain CA")
    configs = []
    for i in range(20):
        issued = public.issue([f"c{i}.example.test"])
        pem = issued.certificate_pem
        if i % 2:
            pem = pem.replace(public.intermediate_pem, "")  # the leaf alone
        configs.append(route_config(f"c{i}.example.test", dataclasses.replace(issued, certificate_pem=pem), 9000))
    roots = TrustedRoots.from_pem([public.certificate_pem.encode()])
    forget_earlier_sets()
    spread = asyncio.run(parallel.validate_on_cores(configs, NOW, roots=roots, min_slice=5))
    serial = validate_route_set(configs, NOW, roots)
    assert spread == serial
    assert [p.host for p in spread.warnings] == [f"c{i}.example.test" for i in range(1, 20, 2)]
    assert all("intermediate missing?" in p.message for p in spread.warnings)
