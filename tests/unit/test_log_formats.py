"""Log formats: one event per line (JSON off a terminal, text on one), Caddy's lines nested.

The driver's own log, searched for secrets, is tested in tests/system/test_logs.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from coretraffic.observe.logs import JsonFormatter, TextFormatter, setup_logging

CADDY_LINE = (
    '{"level":"info","ts":1795661076.8,"logger":"tls","msg":"loading certificate",'
    '"subjects":["app.example.test"],"expiration":1795661076}'
)


def record(message: str, logger: str = "coretraffic.caddy", **extra: Any) -> logging.LogRecord:
    return logging.getLogger(logger).makeRecord(logger, logging.INFO, __file__, 1, message, (), None, extra=extra)


def test_json_nests_caddy_lines_and_keeps_each_event_on_one_line() -> None:
    formatter = JsonFormatter()
    caddy = json.loads(formatter.format(record(CADDY_LINE, source="caddy")))
    assert caddy["msg"] == "loading certificate"
    assert caddy["caddy"] == json.loads(CADDY_LINE)  # an object, not a string holding JSON
    assert (caddy["logger"], caddy["source"], caddy["level"]) == ("coretraffic.caddy", "caddy", "info")

    plain = json.loads(formatter.format(record("panic: runtime error", source="caddy")))
    assert plain["msg"] == "panic: runtime error" and "caddy" not in plain

    try:
        raise ValueError("two\nlines")
    except ValueError:
        failed = logging.getLogger("coretraffic").makeRecord(
            "coretraffic", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    line = formatter.format(failed)
    assert "\n" not in line
    assert "ValueError: two\nlines" in json.loads(line)["exc"]

    fields = json.loads(formatter.format(record("caddy started", logger="coretraffic.caddy", pid=42, msg_id="x")))
    assert (fields["msg"], fields["pid"], fields["msg_id"]) == ("caddy started", 42, "x")


def test_text_shows_caddy_fields_as_key_value() -> None:
    line = TextFormatter().format(record(CADDY_LINE, source="caddy"))
    assert re.fullmatch(r"\S+Z INFO coretraffic\.caddy: tls: loading certificate .*", line)
    assert line.endswith(' subjects=["app.example.test"] expiration=1795661076')


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_auto_format_is_text_on_a_terminal_and_json_elsewhere() -> None:
    controller, terminal = os.openpty()
    with os.fdopen(terminal, "w") as tty:
        setup_logging("INFO", "auto", tty)
        logging.getLogger("coretraffic.test").info("to a person")
        logging.getLogger("coretraffic.test").debug("below the level")
        tty.flush()
        shown = os.read(controller, 4096).decode()
    os.close(controller)
    assert re.fullmatch(r"\S+Z INFO coretraffic\.test: to a person\r?\n", shown)

    pipe = io.StringIO()
    setup_logging("DEBUG", "auto", pipe)
    logging.getLogger("coretraffic.test").debug("to a machine")
    logging.getLogger("httpx").info("HTTP Request: GET http://localhost/config/")  # library chatter: quiet
    (line,) = pipe.getvalue().splitlines()
    assert json.loads(line)["msg"] == "to a machine"
