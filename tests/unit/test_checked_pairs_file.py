"""`sources.checked_pairs_file`: what one process checked spares the next the checks, and changes nothing else.

A "next process" is this one with validation's caches emptied (two empty sets). Real certificates: a public-like
CA's chains (EC and RSA) and self-signed leaves; the checks that are spared are counted by wrapping the function
that makes them.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from coretraffic.core import certificates
from coretraffic.core.trust import TrustedRoots
from coretraffic.core.validate import Validation, checked_pairs, validate_route_set
from coretraffic.sources.checked_pairs_file import FILE_NAME, CheckedPairsFile
from coretraffic.sources.intake import Intake
from coretraffic.sources.parallel import validate_on_cores
from coretraffic.testing.pki import DemoCA, PublicLikeCA, demo_route
from tests.support.waiting import wait_until

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture
def route_set() -> list[dict[str, Any]]:
    public_ec, public_rsa, self_signed = PublicLikeCA(), PublicLikeCA(key_type="rsa"), DemoCA()
    configs = [demo_route(public_ec, f"ec{i}.example.test", 9000) for i in range(3)]
    configs += [demo_route(public_rsa, "rsa.example.test", 9000, key_type="rsa")]
    configs += [demo_route(self_signed, f"self{i}.example.test", 9001) for i in range(2)]
    configs[1]["authentication"] = {"type": "Basic", "user": "ops", "pass": "a password"}
    return configs


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """The pairs checked from here on (each a parse of chain and key)."""
    made: list[tuple[str, str]] = []
    check = certificates._check_pem_pair

    def counted(pair: tuple[str, str]) -> certificates.Certificate:
        made.append(pair)
        return check(pair)

    monkeypatch.setattr(certificates, "_check_pem_pair", counted)
    yield made


def new_process() -> None:
    """Validation keeps the results of the last set and the one before: two empty sets let go of everything."""
    validate_route_set([], NOW)
    validate_route_set([], NOW)


def checked_then_saved(route_set: list[dict[str, Any]], path: Path) -> Validation:
    validation = validate_route_set(route_set, NOW)
    CheckedPairsFile(path).save(checked_pairs())
    new_process()
    return validation


def recalled(route_set: list[dict[str, Any]], path: Path, now: datetime.datetime = NOW) -> Validation:
    return asyncio.run(validate_on_cores(route_set, now, record=CheckedPairsFile(path)))


def test_a_set_checked_by_one_process_is_not_checked_again_by_the_next_and_validates_the_same(
    route_set: list[dict[str, Any]], tmp_path: Path, checks: list[tuple[str, str]]
) -> None:
    path = tmp_path / FILE_NAME
    cold = checked_then_saved(route_set, path)
    assert len(checks) == len(route_set)
    checks.clear()
    assert recalled(route_set, path) == cold
    assert checks == []


def test_a_changed_pair_or_host_is_checked_again_and_the_rest_are_not(
    route_set: list[dict[str, Any]], tmp_path: Path, checks: list[tuple[str, str]]
) -> None:
    path = tmp_path / FILE_NAME
    checked_then_saved(route_set, path)
    changed = [dict(config) for config in route_set]
    changed[0]["publicKey"] = changed[0]["publicKey"].replace("\n", "\r\n")  # the same chain in other bytes
    changed[2]["hostName"] = "not-covered.example.test"  # its pair is known; the name check still runs
    checks.clear()
    validation = recalled(changed, path)
    assert [pair[0] for pair in checks] == [changed[0]["publicKey"]]
    assert [(p.host, p.field) for p in validation.errors] == [("not-covered.example.test", "publicKey")]


def test_expiry_is_judged_at_each_validation_not_when_the_pair_was_checked(
    route_set: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / FILE_NAME
    checked_then_saved(route_set, path)
    later = NOW + datetime.timedelta(days=3650)
    validation = recalled(route_set, path, now=later)
    assert {p.host for p in validation.warnings} == {c["hostName"] for c in route_set}
    assert all("expired" in p.message for p in validation.warnings)


def test_a_chain_sent_in_other_text_is_recalled_as_it_was_re_encoded(
    route_set: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / FILE_NAME
    route_set[0]["publicKey"] = "issued by a public CA\n" + route_set[0]["publicKey"].replace("\n", "\r\n")
    cold = checked_then_saved(route_set, path)
    assert cold.routes[0].certificate_pem != route_set[0]["publicKey"]  # re-encoded: the text is dropped
    assert recalled(route_set, path) == cold


def test_the_file_holds_no_key_and_no_password_and_is_private(route_set: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "state" / FILE_NAME
    checked_then_saved(route_set, path)
    text = path.read_text()
    for config in route_set:
        key_body = "".join(config["privateKey"].splitlines()[1:-1])
        assert key_body[:40] not in text and "PRIVATE KEY" not in text
    assert "a password" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_saving_the_same_pairs_again_writes_nothing(route_set: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    record = CheckedPairsFile(path)
    asyncio.run(validate_on_cores(route_set, NOW, record=record))
    record.save(checked_pairs())
    first = path.stat()
    path.chmod(0o400)  # a second write would replace the file, and with it this mode
    asyncio.run(validate_on_cores([dict(c) for c in route_set], NOW, record=record))
    record.save(checked_pairs())
    assert path.stat().st_ino == first.st_ino and stat.S_IMODE(path.stat().st_mode) == 0o400
    asyncio.run(validate_on_cores(route_set[:-1], NOW, record=record))
    record.save(checked_pairs())  # a host left: nothing new to keep either
    assert path.stat().st_ino == first.st_ino


def test_each_later_set_of_a_running_driver_is_saved_whole(route_set: list[dict[str, Any]], tmp_path: Path) -> None:
    """As `run` does: every set is validated and saved; most of a later set is found by content, not checked."""
    path = tmp_path / FILE_NAME
    record = CheckedPairsFile(path)
    added = demo_route(DemoCA(), "added.example.test", 9002)
    for document in (route_set, route_set, [*route_set, added]):
        asyncio.run(validate_on_cores(document, NOW, record=record))
        record.save(checked_pairs())
    assert len(orjson.loads(path.read_bytes())["pairs"]) == len(route_set) + 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: b"{not json", id="not-json"),
        pytest.param(lambda d: orjson.dumps({**d, "format": 99}), id="other-format"),
        pytest.param(lambda d: orjson.dumps({**d, "checks": "older checks"}), id="other-checks"),
        pytest.param(  # format 1 entries had no issuer: never taken for a chain that reaches a root
            lambda d: orjson.dumps({**d, "format": 1, "pairs": {k: v[:5] for k, v in d["pairs"].items()}}),
            id="format-1",
        ),
        pytest.param(
            lambda d: orjson.dumps({**d, "pairs": {k: v[:5] for k, v in d["pairs"].items()}}),
            id="entries-without-issuer",
        ),
        pytest.param(
            lambda d: orjson.dumps({**d, "pairs": {k: [1, "names", None] for k in d["pairs"]}}), id="bad-entries"
        ),
        pytest.param(
            lambda d: orjson.dumps(
                {**d, "pairs": {k: [*v[:2], "2026-01-01T00:00:00", *v[3:]] for k, v in d["pairs"].items()}}
            ),
            id="naive-time",
        ),
    ],
)
def test_a_damaged_or_foreign_file_costs_only_the_checks(
    damage: Any, route_set: list[dict[str, Any]], tmp_path: Path, checks: list[tuple[str, str]]
) -> None:
    path = tmp_path / FILE_NAME
    cold = checked_then_saved(route_set, path)
    path.write_bytes(damage(orjson.loads(path.read_bytes())))
    checks.clear()
    assert recalled(route_set, path) == cold
    assert len(checks) == len(route_set)


def test_an_unwritable_place_is_reported_once_and_costs_nothing_else(
    route_set: list[dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    record = CheckedPairsFile(blocker / FILE_NAME)  # its directory cannot be made
    validate_route_set(route_set, NOW)
    with caplog.at_level(logging.WARNING, logger="coretraffic"):
        record.save(checked_pairs())
        validate_route_set([*route_set, demo_route(DemoCA(), "one-more.example.test", 1)], NOW)
        record.save(checked_pairs())
    assert [r.getMessage() for r in caplog.records] == [
        f"checked certificates: cannot write {blocker / FILE_NAME}: File exists; "
        "certificates are checked again by each new process"
    ]


class HeldSink:
    """A fleet whose applies finish when the test says (`finish`): a fake, as the point is the order of writes."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.applies: list[asyncio.Future[Any]] = []

    def submit_nowait(self, validation: Validation) -> dict[str, asyncio.Future[Any]]:
        self.applies.append(asyncio.get_running_loop().create_future())
        return {"caddy": self.applies[-1]}

    def unavailable_because(self, name: str) -> str:
        return ""

    def finish(self) -> None:
        self.events.append("applied")
        for apply in self.applies:
            apply.set_result(None)


class WatchedFile(CheckedPairsFile):
    def __init__(self, path: Path, events: list[Any]) -> None:
        super().__init__(path)
        self.events = events

    def save(self, pairs: Sequence[tuple[tuple[str, str], certificates.Certificate]]) -> None:
        self.events.append(("saved", len(pairs)))
        super().save(pairs)


def test_the_record_waits_for_an_apply_and_a_burst_writes_only_its_newest_set(
    route_set: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / FILE_NAME
    events: list[Any] = []

    async def written() -> bool:
        return path.exists()

    async def burst() -> None:
        sink = HeldSink(events)
        intake = Intake(sink, WatchedFile(path, events))
        await intake.submit(route_set[:2])
        await intake.submit(route_set)
        await asyncio.to_thread(lambda: None)  # a round through the threads, where an early write would run
        sink.finish()
        await wait_until(written, 5, "the record written")

    asyncio.run(burst())
    assert events == ["applied", ("saved", len(route_set))]


def test_an_earlier_format_is_checked_again_without_a_warning(
    route_set: list[dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade is not a damaged file: the new version checks every pair once and writes its own format."""
    path = tmp_path / FILE_NAME
    checked_then_saved(route_set, path)
    document = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**document, "format": 1}))
    with caplog.at_level(logging.WARNING):
        recalled(route_set, path)
    assert not [r for r in caplog.records if "checked certificates" in r.getMessage()]


def test_the_issuer_a_chain_needs_is_recalled_and_judged_against_the_roots_of_the_day(
    tmp_path: Path, checks: list[tuple[str, str]]
) -> None:
    public = PublicLikeCA("recall chain CA")
    issued = public.issue(["bare.example.test"])
    bare = demo_route(public, "bare.example.test", 9000)
    bare["publicKey"] = issued.certificate_pem.replace(public.intermediate_pem, "")
    bare["privateKey"] = issued.private_key_pem
    path = tmp_path / FILE_NAME
    checked_then_saved([bare], path)
    checks.clear()
    roots = TrustedRoots.from_pem([public.certificate_pem.encode()])
    validation = asyncio.run(validate_on_cores([bare], NOW, record=CheckedPairsFile(path), roots=roots))
    assert [p.host for p in validation.warnings if "intermediate missing?" in p.message] == ["bare.example.test"]
    assert validation.routes[0].certificate.needs_issuer == "CN=recall chain CA intermediate"
    assert checks == []  # from the record, not checked again
