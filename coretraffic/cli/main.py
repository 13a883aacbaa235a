"""The `coretraffic` command: `run`, `demo`, `check`, `render`, `diff` and `status`.

Wires settings (flags over `CORETRAFFIC_*` environment variables over defaults) to the service and the pure
core. Errors a person can fix (a bad setting, an unreadable routes file, a clashing base config) end in one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import os
import sys
from typing import Any

from pydantic import ValidationError

from coretraffic import __version__
from coretraffic.app.parallel import validate_on_cores
from coretraffic.app.wiring import admin_address, make_renderer
from coretraffic.caddyjson.render import with_admin_listen
from coretraffic.core.redact import redact
from coretraffic.core.validate import Validation
from coretraffic.diff import run_diff
from coretraffic.errors import BaseConfigError, CaddyStartError, RouteSetError, RoutesFileError, StatusError, UsageError
from coretraffic.observe.logs import setup_logging
from coretraffic.observe.status import fetch_status, status_text
from coretraffic.settings import Settings
from coretraffic.sources.routes_file import read_routes_document

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        setup_logging(settings.log_level, settings.log_format)
        if args.one_shot:
            # These build a few large documents once and exit: the cycle collector would walk them again and
            # again for nothing (about 10% of `diff` at 10,000 hosts).
            gc.disable()
        code = int(args.command(settings, args))
        sys.stdout.flush()  # here, where a reader that went away can still be handled
        return code
    except (UsageError, RoutesFileError, RouteSetError, BaseConfigError, CaddyStartError, StatusError) as exc:
        print(f"coretraffic: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader stopped reading (`coretraffic diff | head`): end quietly, as a command killed by SIGPIPE does.
        # stdout goes to /dev/null first, or the interpreter's own flush at exit would complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coretraffic", description="Ingress driver for Caddy, fed by Coreflow.")
    parser.add_argument("--version", action="version", version=f"coretraffic {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, handler, text in (
        ("run", _cmd_run, "apply routes from Coreflow (or --routes FILE) to Caddy until stopped"),
        ("demo", _cmd_demo, "run on demo routes with self-signed certificates and a demo upstream"),
        ("check", _cmd_check, "print per-host problems of a routes file; exit 1 if there are any"),
        ("render", _cmd_render, "print the Caddy JSON for a routes file, secrets redacted"),
        ("diff", _cmd_diff, "show what a routes file would change in the running Caddy (exit 0 none, 1 changes)"),
        ("status", _cmd_status, "print a running driver's status from its status server (exit 1 if not ready)"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.set_defaults(command=handler, one_shot=name in ("check", "render", "diff"))
        _add_setting_flags(command)
        if name == "render":
            command.add_argument("--show-secrets", action="store_true", help="print private keys and hashes too")
        if name == "diff":
            command.add_argument(
                "--full", action="store_true", help="also a unified diff of the Caddy JSON, secrets as fingerprints"
            )
            command.add_argument("--json", dest="as_json", action="store_true", help="print the plan as JSON")
    return parser


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, named after it, documented with its environment variable and default."""
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        text = f"{field.description} [env CORETRAFFIC_{name.upper()}, default: {default}]"
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=text, metavar=name.upper())


def _settings(args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0])
        raise UsageError(
            f"invalid setting --{name.replace('_', '-')} / CORETRAFFIC_{name.upper()}: {error['msg']}"
        ) from None


def _validated_routes_file(settings: Settings) -> Validation:
    if settings.routes is None:
        raise UsageError("--routes FILE (or CORETRAFFIC_ROUTES) is required")
    document = read_routes_document(settings.routes)
    return asyncio.run(validate_on_cores(document, datetime.datetime.now(datetime.UTC)))


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from coretraffic.app.service import run_driver  # here: the other commands need not load the driver's parts

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(run_driver(settings))
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from coretraffic.app.demo import run_demo  # here, as in `run`

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(run_demo(settings))
    return 0


def _cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    validation = _validated_routes_file(settings)
    for problem in validation.problems:
        print(f"{problem.severity}: {problem}")
    print(f"{len(validation.routes)} hosts valid, {len(validation.errors)} errors, {len(validation.warnings)} warnings")
    return 1 if validation.problems else 0


def _cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    validation = _validated_routes_file(settings)
    for problem in validation.problems:
        print(f"{problem.severity}: {problem}", file=sys.stderr)
    # As `run` would load it: with the admin address of the Caddy it drives.
    config: Any = with_admin_listen(make_renderer(settings)(validation.routes), admin_address(settings).listen)
    if not args.show_secrets:
        config = redact(config)
    print(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def _cmd_diff(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(run_diff(settings, full=args.full, as_json=args.as_json))


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.status_addr:
        raise UsageError("--status-addr (or CORETRAFFIC_STATUS_ADDR) is empty: no status server to ask")
    document = fetch_status(settings.status_addr)
    print(status_text(document))
    return 0 if document["ready"] else 1
