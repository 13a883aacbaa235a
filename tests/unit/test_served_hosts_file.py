"""Unit tests of `coretraffic.sources.served_hosts_file`: the names a restarted driver's removal guard starts from."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coretraffic.sources.served_hosts_file import ServedHostsFile


def test_names_written_are_read_back_private_and_an_unchanged_set_is_not_written_again(tmp_path: Path) -> None:
    path = tmp_path / "state" / "served-hosts.json"
    record = ServedHostsFile(path)
    assert record.load() == frozenset()
    record.save(frozenset({"b.example.test", "a.example.test"}))
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    written = path.stat().st_mtime_ns
    record.save(frozenset({"a.example.test", "b.example.test"}))
    assert path.stat().st_mtime_ns == written
    assert ServedHostsFile(path).load() == {"a.example.test", "b.example.test"}


@pytest.mark.parametrize(
    "content", [b"not json", b'{"format": 2, "hosts": ["a"]}', b'{"format": 1, "hosts": [1]}', b"[]"]
)
def test_a_damaged_or_foreign_record_is_no_record_and_one_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "served-hosts.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert ServedHostsFile(path).load() == frozenset()
    assert [r.getMessage() for r in caplog.records if "served hosts" in r.getMessage()] != []


def test_an_unwritable_place_is_a_warning_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        ServedHostsFile(blocker / "served-hosts.json").save(frozenset({"a.example.test"}))
    assert any("cannot write" in r.getMessage() for r in caplog.records)
