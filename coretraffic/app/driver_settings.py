"""The settings a driver runs with, kept in its state directory for the commands that run beside it.

`diff` and `render` must render what the driver loads, and `diff` must find the Caddy it drives: without the
driver's settings (listen host, ports, base config, timeouts, traffic metrics, admin address) they would show
those settings as changes. So `run` writes them at start to `STATE_DIR/driver-settings.json` (0600, replaced
whole) with its pid, version and start time, and the commands take from it what they are not given.

Why the state directory and not the status server: it answers when the status server is off or unreachable,
needs no network path, is where `diff` already finds the spawned Caddy's socket and the checked certificates,
and is the same whether the driver is a process beside the command or a container it is exec'd into.

What it holds: setting values as their flags take them (paths made absolute, admin addresses in Caddy's
notation). No secret: settings name key files but hold no key, and Coreflow's URL, which may carry credentials,
is left out (no command that reads the file uses it).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from coretraffic import __version__
from coretraffic.app.state_lock import is_held
from coretraffic.errors import DriverRecordError, StateFileError
from coretraffic.settings import AdminAddress, Settings
from coretraffic.sources.private_file import read_private_json, write_private

FILE_NAME = "driver-settings.json"
_FORMAT = 1
# A URL may carry credentials (user:pass@, a token in its query); no command that reads the file needs it.
_NOT_RECORDED = frozenset({"coreflow_url"})

_MAX_PID = 2**22  # Linux's pid_max limit; a larger one is no pid (and `os.kill` overflows past 2**31)

log = logging.getLogger("coretraffic")


@dataclass(frozen=True)
class DriverRecord:
    """What a driver wrote of itself: who it is, since when, and its settings by name as recorded (not checked:
    whoever takes them validates them)."""

    path: Path
    pid: int
    version: str
    started: str
    values: dict[str, Any]

    @property
    def spawns_caddy(self) -> bool:
        return not self.values.get("caddy_admin") and not self.values.get("caddy_admin_dns")

    def is_running(self) -> bool:
        """Whether the driver that wrote this still runs: it holds the state dir's lock when it spawns its Caddy,
        else (no lock taken) its pid is alive."""
        if self.spawns_caddy:
            return is_held(self.path.parent)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True


def record_driver_settings(settings: Settings) -> None:
    """Write `settings` with this process's pid, version and start time. A failure is logged: the driver serves
    without the record, and the commands beside it then need its settings given."""
    document = {
        "format": _FORMAT,
        "pid": os.getpid(),
        "version": __version__,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": {
            name: _as_flag_value(getattr(settings, name)) for name in Settings.model_fields if name not in _NOT_RECORDED
        },
    }
    path = settings.state_dir / FILE_NAME
    try:
        write_private(path, orjson.dumps(document, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        log.warning("driver settings: cannot write %s: %s", path, exc.strerror or exc)


def _as_flag_value(value: object) -> Any:
    if isinstance(value, tuple):
        return [_as_flag_value(item) for item in value]
    if isinstance(value, AdminAddress):
        return value.name
    if isinstance(value, Path):
        return str(value.absolute())  # the commands reading it run from other directories
    return value


def read_driver_record(state_dir: Path) -> DriverRecord | None:
    """The record of the driver on `state_dir`; None when there is none. DriverRecordError: it cannot be used."""
    path = state_dir / FILE_NAME
    try:
        document = read_private_json(path)
    except StateFileError as exc:
        raise DriverRecordError(str(exc)) from None
    if document is None:
        return None
    if not isinstance(document, dict):
        raise DriverRecordError(f"{path} is not a driver's settings record")
    pid, version, started, values = (document.get(key) for key in ("pid", "version", "started", "settings"))
    if not (type(pid) is int and 0 < pid <= _MAX_PID and isinstance(values, dict)):
        raise DriverRecordError(f"{path} is not a driver's settings record")
    return DriverRecord(path, pid, " ".join(str(version).split()), " ".join(str(started).split()), values)
