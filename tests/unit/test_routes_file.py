"""Unit tests of `coretraffic.sources.routes_file`: reading and parsing errors, and the polling watcher.

The watcher tests never sleep to synchronise: the routes file is a `Path` subclass that reports every `stat()`
and `read_bytes()` the watcher makes, and the tests wait (with deadlines) for the poll that must have happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PosixPath
from typing import Any

import pytest

from coretraffic.errors import RoutesFileError
from coretraffic.sources.routes_file import parse_routes_document, read_routes_document, watch_routes_file

CANARY = "CANARY-SECRET-9f8e"
DEADLINE_S = 10.0
INTERVAL_S = 0.05


# --- read_routes_document / parse_routes_document -------------------------------------------------------------


def test_reads_a_list_and_a_reverse_configs_object(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('[{"hostName": "a.example.test"}]')
    assert read_routes_document(path) == [{"hostName": "a.example.test"}]
    path.write_text('{"reverseConfigs": []}')
    assert read_routes_document(path) == {"reverseConfigs": []}


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(RoutesFileError) as caught:
        read_routes_document(path)
    assert str(caught.value) == f"cannot read routes file {path}: No such file or directory"


def test_a_file_the_driver_may_not_read_names_the_uid_it_runs_as() -> None:
    # A directory of its own under /tmp: pytest's tmp_path sits in a 0700 directory the other uid cannot enter.
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)
        path = Path(directory) / "routes.json"
        reader, message = _read_as_another_uid(path)
    owner = os.getuid()
    mode = "0" if owner != 0 else "600"
    assert message == (
        f"cannot read routes file {path}: Permission denied (this process runs as uid {reader}; the file is uid "
        f"{owner}'s, mode {mode}: make it readable by uid {reader})"
    )


def _read_as_another_uid(path: Path) -> tuple[int, str]:
    """A 0600 file read by a uid that is not its owner's: as root, the image's uid in a forked child (everything
    it needs is imported); otherwise the owner itself, with the file at mode 0."""
    path.write_text("[]")
    path.chmod(0o600)
    if os.getuid() != 0:
        path.chmod(0)
        return os.getuid(), _read_error(path)
    reader = 10001
    read_end, write_end = os.pipe()
    if (child := os.fork()) == 0:  # pragma: no cover - the child
        os.setgid(reader)
        os.setuid(reader)
        os.write(write_end, _read_error(path).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        message = pipe.read()
    os.waitpid(child, 0)
    return reader, message


def _read_error(path: Path) -> str:
    try:
        read_routes_document(path)
    except RoutesFileError as exc:
        return str(exc)
    return "read"


def test_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoutesFileError, match=f"cannot read routes file {tmp_path}: Is a directory"):
        read_routes_document(tmp_path)


def test_bad_json_gives_line_and_column_but_not_the_text(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(f'[\n  {{"privateKey": "{CANARY}"}}\n  oops {CANARY}\n]\n')
    with pytest.raises(RoutesFileError) as caught:
        read_routes_document(path)
    message = str(caught.value)
    assert message == f"routes file {path} is not valid JSON (line 3, column 3)"
    assert CANARY not in message
    # JSONDecodeError keeps the whole document in `.doc`: it must not travel along as cause or context.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("raw", "line", "column"),
    [(b"", 1, 1), (b"   \n\n", 3, 1), (b'{"a": 1,}', 1, 9), (f'["{CANARY}"'.encode(), 1, 22)],
)
def test_parse_positions(raw: bytes, line: int, column: int) -> None:
    with pytest.raises(RoutesFileError) as caught:
        parse_routes_document(raw, Path("r.json"))
    assert str(caught.value) == f"routes file r.json is not valid JSON (line {line}, column {column})"


def test_non_utf8_file_is_a_clear_error_without_the_text(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_bytes(b'[{"privateKey": "' + CANARY.encode() + b'\xff\xfe"}]')
    with pytest.raises(RoutesFileError) as caught:
        read_routes_document(path)
    assert str(caught.value) == f"routes file {path} is not UTF-8 text"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"reverseConfigs": [1]}')))
    assert read_routes_document(Path("-")) == {"reverseConfigs": [1]}


# --- watch_routes_file ----------------------------------------------------------------------------------------


class Probe:
    """Wakes waiters whenever something they may be waiting for happened (single event loop, no lost wakeups)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        self._event.set()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE_S):
                while not condition():
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what}") from None


class WatchedPath(PosixPath):
    """A path that counts the watcher's `stat()` and `read_bytes()` calls."""

    probe: Probe
    stats: int
    reads: int

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        self.stats += 1
        self.probe.poke()
        return super().stat(follow_symlinks=follow_symlinks)

    def read_bytes(self) -> bytes:
        self.reads += 1
        self.probe.poke()
        return super().read_bytes()


class Watch:
    def __init__(self, path: Path) -> None:
        self.probe = Probe()
        self.path = WatchedPath(path)
        self.path.probe, self.path.stats, self.path.reads = self.probe, 0, 0
        self.documents: list[Any] = []
        self._mtime_ns = 1_700_000_000_000_000_000

    async def on_document(self, document: Any) -> None:
        self.documents.append(document)
        self.probe.poke()

    def write(self, document: Any) -> None:
        self.write_text(json.dumps(document))

    def write_text(self, text: str) -> None:
        Path(self.path).write_text(text)
        self.touch()

    def touch(self) -> None:
        # An explicit, always-newer mtime: coarse file system timestamps must not hide a change from the watcher.
        self._mtime_ns += 1_000_000_000
        os.utime(self.path, ns=(self._mtime_ns, self._mtime_ns))

    async def until_documents(self, *expected: Any) -> None:
        await self.probe.until(lambda: self.documents == list(expected), f"documents {list(expected)}")

    async def until_reread_and_done(self) -> None:
        """Wait until the watcher has read the file again and finished that round (the next stat started)."""
        reads = self.path.reads
        await self.probe.until(lambda: self.path.reads > reads, "a re-read of the file")
        stats = self.path.stats
        await self.probe.until(lambda: self.path.stats > stats, "the next poll")

    async def until_polled_twice(self) -> None:
        stats = self.path.stats
        await self.probe.until(lambda: self.path.stats >= stats + 2, "two more polls")


@contextlib.asynccontextmanager
async def watching(watch: Watch) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch_routes_file(watch.path, watch.on_document, interval=INTERVAL_S))
    try:
        yield task
        assert not task.done(), "the watcher stopped"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_calls_back_on_start_and_on_each_change(tmp_path: Path) -> None:
    watch = Watch(tmp_path / "routes.json")
    watch.write([{"hostName": "a.example.test"}])
    async with watching(watch):
        await watch.until_documents([{"hostName": "a.example.test"}])
        watch.write({"reverseConfigs": []})
        await watch.until_documents([{"hostName": "a.example.test"}], {"reverseConfigs": []})
        watch.write([{"hostName": "b.example.test"}])
        await watch.until_documents(
            [{"hostName": "a.example.test"}], {"reverseConfigs": []}, [{"hostName": "b.example.test"}]
        )


async def test_same_size_change_is_seen(tmp_path: Path) -> None:
    watch = Watch(tmp_path / "routes.json")
    watch.write(["a"])
    async with watching(watch):
        await watch.until_documents(["a"])
        watch.write(["b"])
        await watch.until_documents(["a"], ["b"])


async def test_touch_without_change_does_not_call_back(tmp_path: Path) -> None:
    watch = Watch(tmp_path / "routes.json")
    watch.write(["a"])
    async with watching(watch):
        await watch.until_documents(["a"])
        for _ in range(3):
            watch.touch()
            await watch.until_reread_and_done()  # it did look at the file again ...
        assert watch.documents == [["a"]]  # ... and found nothing new
        Path(watch.path).write_text(json.dumps(["a"]))  # rewritten with the same bytes
        watch.touch()
        await watch.until_reread_and_done()
        assert watch.documents == [["a"]]


async def test_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    watch = Watch(tmp_path / "routes.json")
    watch.write(["a"])
    async with watching(watch):
        await watch.until_documents(["a"])
        reads = watch.path.reads
        await watch.until_polled_twice()
        assert watch.path.reads == reads
        assert watch.documents == [["a"]]


async def test_invalid_json_is_logged_and_skipped_then_valid_json_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="coretraffic.routes_file")
    watch = Watch(tmp_path / "routes.json")
    watch.write(["a"])
    async with watching(watch):
        await watch.until_documents(["a"])
        watch.write_text(f'[{{"privateKey": "{CANARY}"')
        await watch.until_reread_and_done()
        assert watch.documents == [["a"]]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "is not valid JSON (line 1, column" in errors[0]
        assert "keeping the last good config" in errors[0]
        assert CANARY not in caplog.text
        watch.write(["c"])
        await watch.until_documents(["a"], ["c"])


async def test_file_missing_then_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="coretraffic.routes_file")
    watch = Watch(tmp_path / "routes.json")
    async with watching(watch):
        await watch.until_polled_twice()  # no file yet: nothing to apply
        assert watch.documents == []
        watch.write(["a"])
        await watch.until_documents(["a"])
        Path(watch.path).unlink()
        await watch.until_polled_twice()
        await watch.until_polled_twice()
        assert watch.documents == [["a"]]
        watch.write(["d"])
        await watch.until_documents(["a"], ["d"])
    outages = [r.getMessage() for r in caplog.records if "cannot read routes file" in r.getMessage()]
    assert len(outages) == 2  # once per outage (at start and after the unlink), not once per poll


async def test_replaced_file_is_seen(tmp_path: Path) -> None:
    """Editors and ConfigMap updates replace the file (new inode) rather than write into it."""
    watch = Watch(tmp_path / "routes.json")
    watch.write(["a"])
    async with watching(watch):
        await watch.until_documents(["a"])
        staged = tmp_path / "routes.json.tmp"
        staged.write_text(json.dumps(["e"]))
        staged.replace(tmp_path / "routes.json")
        await watch.until_documents(["a"], ["e"])
