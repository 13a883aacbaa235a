"""Unit tests of `coretraffic.core.serving`: each host's last good version, and the guard on mass removal."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from coretraffic.core.serving import REMOVAL_GUARD_MIN_HOSTS, ServingPolicy, removal_is_guarded
from coretraffic.core.validate import Validation, validate_route_set
from coretraffic.errors import RouteSetHeldBack
from coretraffic.testing.pki import DemoCA, demo_route

T0 = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
DELAY = datetime.timedelta(seconds=300)


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA("coretraffic serving CA")


@pytest.fixture(scope="module")
def configs(ca: DemoCA) -> dict[str, dict[str, Any]]:
    return {f"h{i:02}.example.test": demo_route(ca, f"h{i:02}.example.test", 9000 + i) for i in range(24)}


def validated(*configs: Any) -> Validation:
    return validate_route_set(list(configs), T0)


def served(validation: Validation) -> list[str]:
    return sorted(route.host for route in validation.routes)


def test_a_served_host_whose_new_config_is_refused_keeps_its_last_good_version(
    ca: DemoCA, configs: dict[str, dict[str, Any]]
) -> None:
    policy = ServingPolicy(DELAY)
    a, b = configs["h00.example.test"], configs["h01.example.test"]
    first = policy.decide(validated(a, b), T0).validation
    kept_route = next(r for r in first.routes if r.host == "h00.example.test")
    other_key = ca.issue(["h00.example.test"]).private_key_pem
    for later, bad in enumerate(({**a, "privateKey": other_key}, {**a, "destinationPorts": ["8080"]}), 1):
        decision = policy.decide(validated(bad, b), T0 + datetime.timedelta(minutes=later))
        assert served(decision.validation) == ["h00.example.test", "h01.example.test"]
        assert next(r for r in decision.validation.routes if r.host == "h00.example.test") is kept_route
        assert decision.validation.stale == ("h00.example.test",)
        (stale,) = decision.stale
        assert stale.since == T0 + datetime.timedelta(minutes=1)  # since the first refusal, not the latest
        assert stale.refused and all(p.host == "h00.example.test" for p in stale.refused)
        assert decision.validation.errors  # the reply still names the host and why
    healed = policy.decide(validated(a, b), T0 + datetime.timedelta(minutes=5))
    assert healed.stale == () and healed.validation.stale == ()


def test_a_host_never_served_is_refused_and_one_the_set_leaves_out_is_removed(
    ca: DemoCA, configs: dict[str, dict[str, Any]]
) -> None:
    policy = ServingPolicy(DELAY)
    a, b, c = (configs[f"h0{i}.example.test"] for i in range(3))
    policy.decide(validated(a, b), T0)
    broken_new = {**c, "privateKey": ca.issue(["h02.example.test"]).private_key_pem}
    decision = policy.decide(validated(a, broken_new), T0)
    assert served(decision.validation) == ["h00.example.test"]  # h01 left out: removed; h02 never served
    assert decision.stale == () and decision.held is None


def test_a_stale_host_keeps_its_version_even_after_its_certificate_expired(ca: DemoCA) -> None:
    policy = ServingPolicy(DELAY)
    short = ca.issue(["short.example.test"], not_after=T0 + datetime.timedelta(days=1))
    config = {**demo_route(ca, "short.example.test", 9999), "publicKey": short.certificate_pem}
    config["privateKey"] = short.private_key_pem
    policy.decide(validated(config), T0)
    later = T0 + datetime.timedelta(days=2)
    decision = policy.decide(validate_route_set([{**config, "destinationIps": []}], later), later)
    assert served(decision.validation) == ["short.example.test"]
    assert decision.stale[0].document(later)["serving"]["certificate_expired"] is True


@pytest.mark.parametrize(
    ("served_count", "removed", "remaining", "guarded"),
    [
        (24, 13, 11, True),
        (24, 12, 12, False),
        (12, 12, 12, True),  # every host replaced: at 10 and more, held too
        (12, 7, 5, False),
        (3, 2, 1, False),
        (3, 3, 0, True),
        (1, 1, 0, True),
        (1, 1, 1, False),  # a small cluster replacing its one host
    ],
)
def test_the_guard_takes_more_than_half_and_ten_or_all_with_nothing_in_their_place(
    served_count: int, removed: int, remaining: int, guarded: bool
) -> None:
    assert REMOVAL_GUARD_MIN_HOSTS == 10
    assert removal_is_guarded(removed, served_count, remaining) is guarded


def test_an_empty_push_costs_no_host_until_it_comes_again_after_the_delay(configs: dict[str, dict[str, Any]]) -> None:
    policy = ServingPolicy(DELAY)
    everything = validated(*configs.values())
    policy.decide(everything, T0)
    held = policy.decide(validated(), T0)
    assert served(held.validation) == sorted(configs)
    assert held.held is not None and held.held.hosts == tuple(sorted(configs))
    assert "held back" in held.validation.held_back and held.held.ident in held.validation.held_back
    again_soon = policy.decide(validated(), T0 + DELAY / 2)
    assert served(again_soon.validation) == sorted(configs) and again_soon.held == held.held  # same since
    meant = policy.decide(validated(), T0 + DELAY)
    assert served(meant.validation) == [] and meant.held is None and meant.validation.held_back == ""


def test_a_good_set_after_a_transient_empty_one_ends_the_hold(configs: dict[str, dict[str, Any]]) -> None:
    policy = ServingPolicy(DELAY)
    policy.decide(validated(*configs.values()), T0)
    assert policy.decide(validated(), T0).held is not None
    back = policy.decide(validated(*configs.values()), T0 + datetime.timedelta(seconds=1))
    assert back.held is None and served(back.validation) == sorted(configs)
    # A later empty push starts a hold of its own: the earlier one does not count toward its delay.
    assert policy.decide(validated(), T0 + DELAY).held is not None


def test_an_operator_confirms_exactly_the_removal_held_back(configs: dict[str, dict[str, Any]]) -> None:
    policy = ServingPolicy(DELAY)
    policy.decide(validated(*configs.values()), T0)
    keep = list(configs.values())[:5]
    held = policy.decide(validated(*keep), T0).held
    assert held is not None and len(held.hosts) == len(configs) - 5
    assert policy.decide(validated(*keep), T0, confirmed="not-this-one").held is not None
    done = policy.decide(validated(*keep), T0, confirmed=held.ident)
    assert done.held is None and served(done.validation) == sorted(c["hostName"] for c in keep)


def test_the_rest_of_a_set_applies_while_its_removal_is_held_back(
    ca: DemoCA, configs: dict[str, dict[str, Any]]
) -> None:
    policy = ServingPolicy(DELAY)
    policy.decide(validated(*configs.values()), T0)
    new = demo_route(ca, "new.example.test", 9500)
    decision = policy.decide(validated(new), T0)
    assert served(decision.validation) == sorted([*configs, "new.example.test"])


def test_no_delay_means_no_guard(configs: dict[str, dict[str, Any]]) -> None:
    policy = ServingPolicy(datetime.timedelta(0))
    policy.decide(validated(*configs.values()), T0)
    assert served(policy.decide(validated(), T0).validation) == []


def test_after_a_restart_a_first_set_that_removes_most_hosts_is_held_back_whole(
    configs: dict[str, dict[str, Any]],
) -> None:
    policy = ServingPolicy(DELAY, served_before=frozenset(configs))
    with pytest.raises(RouteSetHeldBack, match="nothing of this set is applied"):
        policy.decide(validated(), T0)
    assert policy.held is not None and policy.held.whole_set and policy.served == frozenset(configs)
    with pytest.raises(RouteSetHeldBack):
        policy.decide(validated(), T0 + DELAY / 2)
    applied = policy.decide(validated(), T0 + DELAY)  # the same removal after the delay
    assert served(applied.validation) == [] and policy.served == frozenset()


def test_after_a_restart_an_ordinary_first_set_applies_and_an_operator_can_confirm_a_held_one(
    configs: dict[str, dict[str, Any]],
) -> None:
    names = sorted(configs)
    ordinary = ServingPolicy(DELAY, served_before=frozenset(names))
    assert served(ordinary.decide(validated(*list(configs.values())[:20]), T0).validation) == names[:20]
    held = ServingPolicy(DELAY, served_before=frozenset(names))
    with pytest.raises(RouteSetHeldBack):
        held.decide(validated(), T0)
    assert held.held is not None
    assert served(held.decide(validated(), T0, confirmed=held.held.ident).validation) == []
