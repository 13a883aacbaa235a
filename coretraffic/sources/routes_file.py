"""Routes-file source: the embedded default that needs no Coreflow.

Feeds the fleet of Caddies. The file holds a JSON array of configs or `{"reverseConfigs": [...]}`, in Coreflow's wire
format. It is polled (stat every second, re-read only when size, mtime or inode moved, applied only when the
content changed): polling also sees editors that replace the file and Kubernetes ConfigMap symlink swaps, which
inotify on the file alone would miss. A file that cannot be read, parsed or used as a route set is logged, shown
under the source in `/status` and counted in `/metrics` until a good file arrives, and the last good config keeps
serving. `RoutesFileSource` is the file as a route source: what `run --routes` starts.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from coretraffic.core.readings import Reading
from coretraffic.errors import RouteSetError, RouteSetHeldBack, RoutesFileError
from coretraffic.sources.intake import Intake

log = logging.getLogger("coretraffic.routes_file")
intake_log = logging.getLogger("coretraffic")  # where intake reports what became of a route set


def read_routes_document(path: Path) -> Any:
    """The parsed JSON of a routes file (`-` reads standard input)."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise RoutesFileError(cannot_read(path, exc)) from None
    return parse_routes_document(raw, path)


def cannot_read(path: Path, exc: OSError) -> str:
    """Why `path` cannot be read; when permission is denied, who reads it and who owns it: a container runs as a
    uid of its own (10001 in the image) that a `chmod 600` file of the host's does not admit."""
    text = f"cannot read routes file {path}: {exc.strerror or exc}"
    if not isinstance(exc, PermissionError):
        return text
    try:
        stat = path.stat()
    except OSError:
        return f"{text} (this process runs as uid {os.getuid()}: a directory above the file does not let it in)"
    return (
        f"{text} (this process runs as uid {os.getuid()}; the file is uid {stat.st_uid}'s, mode "
        f"{stat.st_mode & 0o777:o}: make it readable by uid {os.getuid()})"
    )


def parse_routes_document(raw: bytes, path: Path) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        # The position only: the text around it may be a private key.
        raise RoutesFileError(f"routes file {path} is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise RoutesFileError(f"routes file {path} is not UTF-8 text") from None
    except (ValueError, RecursionError):  # a number of thousands of digits; nesting deeper than the parser goes
        raise RoutesFileError(
            f"routes file {path} is not usable JSON (too deeply nested or a number too long)"
        ) from None


ProblemObserver = Callable[[str | None], None]  # what is wrong with the file now, or None once it is good again


async def watch_routes_file(
    path: Path,
    on_document: Callable[[Any], Awaitable[None]],
    on_problem: ProblemObserver = lambda _: None,
    interval: float = 1.0,
) -> None:
    """Call `on_document` with the file's content now and after every change; runs until cancelled."""
    last_stat: tuple[int, int, int] | None = None
    last_digest: bytes | None = None
    failing = False
    while True:
        try:
            stat = path.stat()
            current = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            raw = path.read_bytes() if current != last_stat else None
        except OSError as exc:
            if not failing:  # once per outage, not every second
                problem = cannot_read(path, exc)
                log.error("%s; keeping the last good config", problem)
                on_problem(problem)
            failing, last_stat, last_digest = True, None, None  # readable again: parsed again, even if unchanged
        else:
            failing, last_stat = False, current
            if raw is not None and (digest := hashlib.sha256(raw).digest()) != last_digest:
                last_digest = digest
                try:
                    document = parse_routes_document(raw, path)
                except RoutesFileError as exc:
                    log.error("%s; keeping the last good config", exc)
                    on_problem(str(exc))
                else:
                    on_problem(None)
                    await on_document(document)
        await asyncio.sleep(interval)


class RoutesFileSource:
    """Applies the routes file at `path` to the fleet of Caddies, now and after every change (`RouteSource`)."""

    def __init__(self, path: Path, intake: Intake) -> None:
        self._path = path
        self._intake = intake
        self._problem: str | None = None
        self._problem_since = 0.0
        self._errors = 0

    async def run(self) -> None:
        async def submit(document: Any) -> None:
            try:
                await self._intake.submit(document)  # each reconciler logs the outcome
            except RouteSetError as exc:
                intake_log.error("route set rejected as a whole: %s; keeping the last good config", exc)
                self._observe_problem(f"routes file {self._path} is not a route set: {exc}")
            except RouteSetHeldBack as exc:  # `/status` shows the hold under `serving`
                intake_log.error("route set held back: %s", exc)

        await watch_routes_file(self._path, submit, self._observe_problem)

    def _observe_problem(self, problem: str | None) -> None:
        if problem is not None and problem != self._problem:
            self._errors += 1
            self._problem_since = time.time()
        self._problem = problem

    def description(self) -> dict[str, Any]:
        problem = None
        if self._problem is not None:
            since = datetime.datetime.fromtimestamp(self._problem_since, datetime.UTC)
            problem = {
                "error": self._problem,
                "since": since.isoformat(timespec="seconds"),
                "effect": "the last good route set keeps serving",
            }
        return {"routes_file": str(self._path), "problem": problem}

    def readings(self) -> tuple[Reading, ...]:
        return (
            Reading(
                "coretraffic_source_errors_total",
                "Times a route source's input became unusable (unreadable, not JSON, not a route set)",
                "counter",
                self._errors,
            ),
            Reading(
                "coretraffic_source_failing",
                "1 while a route source's latest input is unusable and the last good set keeps serving",
                "gauge",
                int(self._problem is not None),
            ),
        )
