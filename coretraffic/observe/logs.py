"""Log output for the whole loop: one event per line on stderr, JSON for collectors and text for a terminal.

Set up once by `cli.main`. Caddy's own log lines come through here too: the spawned-Caddy forwarder logs each
on `coretraffic.caddy` with `extra={"source": "caddy"}`. A Caddy line is JSON itself; in JSON mode it is nested
as an object under "caddy" (its `msg` lifted out), not re-encoded as a string inside a string; in text mode its
fields follow its message as key=value.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Caddy fields already shown as the line's time, level, logger and message.
_CADDY_HEAD = ("ts", "level", "logger", "msg")
# Libraries whose own detail is not ours to show: httpx logs every admin request (one a second from the health
# checks); websockets at DEBUG logs every frame, and the frames of a routing update carry private keys (it
# shows only their first bytes today, which is nothing to rely on).
_QUIET_LIBRARIES = ("httpx", "httpcore", "websockets")


def setup_logging(level: str, log_format: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr), one line each, replacing any earlier setup."""
    stream = stream or sys.stderr
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python's warnings too, as events, not as loose lines between them


class _Formatter(logging.Formatter):
    def event(self, record: logging.LogRecord) -> tuple[str, str, dict[str, Any]]:
        """The record's time (UTC, ISO 8601), message and extra fields, Caddy's own fields under "caddy"."""
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        time = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message = record.getMessage()
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        if fields.get("source") == "caddy":
            try:
                caddy = json.loads(message)
            except ValueError:
                caddy = None  # not JSON (a panic, a start-up line): passed on as it is
            if isinstance(caddy, dict):
                message = str(caddy.get("msg", ""))
                fields["caddy"] = caddy
        return time, message, fields


class JsonFormatter(_Formatter):
    """`{"time", "level", "logger", "msg", ...fields, "exc"?}` as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        time, message, fields = self.event(record)
        entry: dict[str, Any] = {"time": time, "level": record.levelname.lower(), "logger": record.name, "msg": message}
        for key, value in fields.items():
            entry.setdefault(key, value)  # an `extra=` field never hides the line's own time, level or message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(_Formatter):
    """`time LEVEL logger: message key=value ...` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        time, message, fields = self.event(record)
        caddy = fields.pop("caddy", None)
        if caddy is not None:
            fields.pop("source")
            if caddy.get("logger"):
                message = f"{caddy['logger']}: {message}"
            fields.update((k, v) for k, v in caddy.items() if k not in _CADDY_HEAD)
        line = " ".join([f"{time} {record.levelname} {record.name}: {message}", *map(_pair, fields.items())])
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _pair(item: tuple[str, Any]) -> str:
    key, value = item
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return f"{key}={value}"
    return f"{key}={json.dumps(value, ensure_ascii=False, default=str)}"
