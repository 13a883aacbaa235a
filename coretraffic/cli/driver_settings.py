"""`diff` and `render` beside a running driver: its recorded settings under the flags and variables given.

Precedence: a flag, then a `CORETRAFFIC_*` variable, then the driver's record (`app.driver_settings`), then the
default. Never from the record: `routes` (what the operator previews) and `state_dir` (where the record was found).
A record from another version is taken key by key: what this version does not know or does not accept is left
out with one warning line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from coretraffic.app.driver_settings import DriverRecord, read_driver_record
from coretraffic.errors import DriverRecordError, UsageError
from coretraffic.settings import Settings

_NEVER_TAKEN = frozenset({"routes", "state_dir"})


@dataclass(frozen=True)
class Beside:
    """The driver whose settings a command took, and whether it still runs."""

    record: DriverRecord
    running: bool

    def __str__(self) -> str:
        state_dir, pid = self.record.path.parent, self.record.pid
        if self.running:
            return f"the driver running on {state_dir} (pid {pid}, since {self.record.started})"
        return f"the driver last run on {state_dir} (pid {pid}, not running now)"


def validated_settings(given: dict[str, Any]) -> Settings:
    """Settings from the flags `given` over `CORETRAFFIC_*` variables over defaults; UsageError naming the flag."""
    try:
        return Settings(**given)
    except ValidationError as exc:
        name, message = _errors(exc)[0]
        raise UsageError(
            f"invalid setting --{name.replace('_', '-')} / CORETRAFFIC_{name.upper()}: {message}"
        ) from None


def beside_driver(settings: Settings, given: dict[str, Any], uses: tuple[str, ...]) -> tuple[Settings, Beside | None]:
    """`settings` (made of the flags `given`) with every setting in `uses` that no flag or variable set taken from
    the record of the driver on the state dir; says so on stderr. Unchanged when there is no usable record."""
    try:
        record = read_driver_record(settings.state_dir)
    except DriverRecordError as exc:
        _warn(f"{exc}; its driver's settings are not used")
        return settings, None
    if record is None:
        return settings, None
    unusable = {name: "unknown" for name in record.values if name not in Settings.model_fields}
    taken: dict[str, Any] = {}
    for name, value in record.values.items():
        if name in uses and name not in _NEVER_TAKEN and name not in settings.model_fields_set:
            if _is_flag_value(value):
                taken[name] = value
            else:
                unusable[name] = "not a setting's value"
    merged = None
    while merged is None:
        try:
            merged = Settings(**given, **taken)
        except ValidationError as exc:
            errors = _errors(exc)
            recorded = {name: message for name, message in errors if name in taken}
            if not recorded:  # a flag or variable given does not fit the driver's settings
                name, message = errors[0]
                raise UsageError(
                    f"--{name.replace('_', '-')} does not fit the settings of the driver in {record.path}: {message}; "
                    "give the settings it names too, or --no-driver-settings"
                ) from None
            unusable.update(recorded)
            for name in recorded:
                del taken[name]
    if unusable:
        ignored = ", ".join(f"{name} ({why})" for name, why in unusable.items())
        _warn(f"{record.path}: ignored what this version does not take: {ignored}")
    beside = Beside(record, record.is_running())
    print(f"coretraffic: using the settings of {beside}", file=sys.stderr)
    return merged, beside


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error's setting and message, in one line."""
    return [(str(error["loc"][0]), " ".join(error["msg"].split())) for error in exc.errors(include_url=False)]


def _is_flag_value(value: object) -> bool:
    """What a flag can give: a scalar, or a repeated flag's list of scalars (a record from another version may
    hold anything)."""
    scalar = (str, int, float, bool, type(None))
    return isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))


def _warn(text: str) -> None:
    print(f"coretraffic: warning: {text}", file=sys.stderr)
