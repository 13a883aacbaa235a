"""The `coretraffic` command: `run`, `demo`, `check`, `render`, `diff`, `status` and `hosts`.

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
import typing
from collections.abc import Sequence
from typing import Any

from coretraffic import __version__
from coretraffic.app.driver_settings import record_driver_settings
from coretraffic.app.state_lock import state_dir_lock
from coretraffic.app.wiring import admin_address, as_loaded, checked_pairs_record, make_renderer
from coretraffic.caddy.adapt import SHIPPED_BASE_CONFIG
from coretraffic.caddyjson.redact import redact
from coretraffic.cli.diff import run_diff
from coretraffic.cli.driver_settings import beside_driver, validated_settings
from coretraffic.cli.routes import required_routes
from coretraffic.core.host_list import HOST_STATES
from coretraffic.core.text import counted
from coretraffic.core.validate import Validation, host_or_label, normalise_host_name
from coretraffic.errors import FieldError, UsageError, UserError
from coretraffic.observe.hosts_text import hosts_text
from coretraffic.observe.logs import setup_logging
from coretraffic.observe.status_text import confirm_removal, fetch_json, fetch_status, status_text
from coretraffic.settings import Settings, default_state_dir
from coretraffic.sources.parallel import validate_on_cores
from coretraffic.sources.routes_file import read_routes_document
from coretraffic.sources.trust_store import system_roots

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE
HOSTS_TIMEOUT_S = 60.0  # a list of 100,000 hosts is about 30 MB, built in half a second on an idle driver


# What each command uses: it shows and accepts these flags and no others (`CORETRAFFIC_*` variables of the rest
# are read and do nothing there).
_UPSTREAMS = (
    "upstream_dial_timeout",
    "upstream_response_timeout",
    "upstream_try_duration",
    "upstream_fail_duration",
    "stream_close_delay",
)
_ADMIN = ("caddy_admin", "admin_client_cert", "admin_client_key", "admin_ca", "remote_admin_listen")
# What Caddy reports of the traffic: part of the rendered config, so `render` and `diff` need them as `run` has them.
_TRAFFIC = ("traffic_metrics", "caddy_metrics_listen", "access_log", "access_log_sample", "access_log_skip_hosts")
_DATA_PLANE = (
    "base_config",
    "http_port",
    "https_port",
    "listen_host",
    "http3",
    "ocsp_stapling",
    *_UPSTREAMS,
    *_TRAFFIC,
)
_COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "run": tuple(Settings.model_fields),
    "demo": ("state_dir", *_DATA_PLANE, "bcrypt_cost", "log_level", "log_format", "status_addr"),
    "check": ("routes", "state_dir"),
    "render": ("routes", *_ADMIN, "state_dir", *_DATA_PLANE, "bcrypt_cost"),
    "diff": ("routes", *_ADMIN, "state_dir", *_DATA_PLANE),
    "status": ("status_addr",),
    "confirm-removal": ("status_addr",),
    "hosts": ("status_addr",),
}


# The commands that render what a driver loads: they take its recorded settings (`cli.driver_settings`). `check`
# uses no setting the driver's record would change.
_BESIDE_A_DRIVER = ("render", "diff")


def _command_defaults(command: str) -> dict[str, Any]:
    """Defaults that differ from `run`'s. The demo has demo credentials: loopback only, and a state dir of its own;
    it runs on the shipped base config, as the container image does."""
    if command == "demo":
        return {
            "state_dir": default_state_dir("coretraffic-demo"),
            "listen_host": "127.0.0.1",
            "base_config": SHIPPED_BASE_CONFIG,
        }
    return {}


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
    except UserError as exc:
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
        ("check", _cmd_check, "print per-host problems of a routes file; exit 1 if any host is rejected"),
        ("render", _cmd_render, "print the Caddy JSON for a routes file, secrets redacted"),
        ("diff", _cmd_diff, "show what a routes file would change in the running Caddy (exit 0 none, 1 changes)"),
        ("status", _cmd_status, "print a running driver's status from its status server (exit 1 if not ready)"),
        (
            "hosts",
            _cmd_hosts,
            "list a running driver's hosts: state and why, upstreams, auth, certificate (exit 1 if a HOST is unknown)",
        ),
        (
            "confirm-removal",
            _cmd_confirm_removal,
            "apply the removal a running driver holds back (its id is in `status`): the hosts stop being served",
        ),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.set_defaults(command=handler, command_name=name, one_shot=name in ("check", "render", "diff"))
        _add_setting_flags(command, _COMMAND_SETTINGS[name], _command_defaults(name))
        if name == "demo":
            command.add_argument(
                "--issue",
                metavar="HOST",
                help="print a routes-file config for HOST with a certificate from the demo's CA, and exit",
            )
            command.add_argument(
                "--add",
                action="store_true",
                help="with --issue: add the config to the demo's routes file (a running demo applies it)",
            )
        if name == "confirm-removal":
            command.add_argument("id", help="the held-back removal's id, as `coretraffic status` shows it")
        if name == "hosts":
            command.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (exact names, any case)")
            command.add_argument("--state", choices=HOST_STATES, default="", help="only the hosts in this state")
            command.add_argument("--json", dest="as_json", action="store_true", help="print the /hosts document")
        if name == "check":
            command.add_argument(
                "--strict",
                action="store_true",
                help="exit 1 on warnings and notices too (expired certificates, chains missing an intermediate, "
                "duplicate hosts, fields the wire format does not have)",
            )
        if name in _BESIDE_A_DRIVER:
            command.add_argument(
                "--no-driver-settings",
                dest="driver_settings",
                action="store_false",
                help="ignore the settings the driver on --state-dir recorded there (by default, what no flag or "
                "variable gives is taken from them)",
            )
        if name == "render":
            command.add_argument("--show-secrets", action="store_true", help="print private keys and hashes too")
        if name == "diff":
            command.add_argument(
                "--full", action="store_true", help="also a unified diff of the Caddy JSON, secrets as fingerprints"
            )
            command.add_argument("--json", dest="as_json", action="store_true", help="print the plan as JSON")
    return parser


def _add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str], defaults: dict[str, Any]) -> None:
    """One flag per setting the command uses, named after it, documented with its environment variable and default."""
    for name in names:
        field = Settings.model_fields[name]
        flag = "--" + name.replace("_", "-")
        default = defaults.get(name, field.get_default(call_default_factory=True))
        text = f"{field.description} [env CORETRAFFIC_{name.upper()}, default: {default if default != () else 'none'}]"
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typing.get_origin(field.annotation) is tuple:  # a list setting: the flag is given once per value
            parser.add_argument(flag, dest=name, action="append", default=None, help=text, metavar=name.upper())
        else:
            parser.add_argument(flag, dest=name, default=None, help=text, metavar=name.upper())


def _settings(args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None}
    settings = validated_settings(given)
    args.beside = None
    if args.command_name in _BESIDE_A_DRIVER and args.driver_settings:
        settings, args.beside = beside_driver(settings, given, _COMMAND_SETTINGS[args.command_name])
    defaults = _command_defaults(args.command_name)
    return settings.model_copy(update={k: v for k, v in defaults.items() if k not in settings.model_fields_set})


def _issued_host(name: str) -> str:
    try:
        return normalise_host_name(name)
    except FieldError as exc:
        raise UsageError(f"--issue {name!r}: {exc.message}") from None


def _validated_routes_file(settings: Settings) -> Validation:
    document = read_routes_document(required_routes(settings))
    now = datetime.datetime.now(datetime.UTC)
    return asyncio.run(validate_on_cores(document, now, record=checked_pairs_record(settings), roots=system_roots()))


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from coretraffic.app.service import run_driver  # here: the other commands need not load the driver's parts

    # Only a spawned Caddy keeps its state there; a driver of an existing Caddy writes only its checked
    # certificates to it (each write replaces the file whole, so two such drivers may share it).
    held = state_dir_lock(settings.state_dir) if settings.spawns_caddy else contextlib.nullcontext()
    with held, contextlib.suppress(asyncio.CancelledError):
        record_driver_settings(settings)  # once the state dir is this driver's: for `diff` and `render` beside it
        asyncio.run(run_driver(settings))
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from coretraffic.app.demo import ROUTES_FILE as DEMO_ROUTES_FILE
    from coretraffic.app.demo import add_route, issued_route, run_demo  # here, as in `run`

    if args.add and args.issue is None:
        raise UsageError("--add goes with --issue HOST")
    if args.issue is not None:
        config = issued_route(settings.state_dir, _issued_host(args.issue))
        if args.add:
            added_to = add_route(settings.state_dir, config)
            print(f"{config['hostName']} added to {added_to} (a running demo applies it within a second)")
            return 0
        print(json.dumps(config, indent=2))
        print(
            f"coretraffic: add this config to the array in {settings.state_dir / DEMO_ROUTES_FILE}, or run this "
            "again with --add (a running demo applies it within a second; the demo writes that file anew at each "
            "start)",
            file=sys.stderr,
        )
        return 0
    with state_dir_lock(settings.state_dir), contextlib.suppress(asyncio.CancelledError):
        record_driver_settings(settings)  # `diff` and `render` beside the demo see what it runs, as beside `run`
        asyncio.run(run_demo(settings))
    return 0


def _cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    validation = _validated_routes_file(settings)
    for problem in validation.problems:
        print(f"{problem.severity}: {problem}")
    errors, warnings, notices = validation.errors, validation.warnings, validation.notices
    print(
        f"{counted(len(validation.routes), 'host')} valid, {counted(len(errors), 'error')}, "
        f"{counted(len(warnings), 'warning')}, {counted(len(notices), 'notice')}"
    )
    return 1 if errors or (args.strict and (warnings or notices)) else 0


def _cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    validation = _validated_routes_file(settings)
    for problem in validation.problems:
        print(f"{problem.severity}: {problem}", file=sys.stderr)
    # As `run` would load it: with the admin address of the Caddy it drives.
    config: Any = as_loaded(make_renderer(settings), validation, admin_address(settings).config_listen)
    if not args.show_secrets:
        config = redact(config)
    print(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def _cmd_diff(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(run_diff(settings, full=args.full, as_json=args.as_json, beside=args.beside))


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    document = fetch_status(_status_addr(settings))
    print(status_text(document))
    return 0 if document["ready"] else 1


def _cmd_hosts(settings: Settings, args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(map(_host_name_argument, args.hosts)))
    document = fetch_json(
        _status_addr(settings), "/hosts", {"host": names, "state": args.state}, timeout=HOSTS_TIMEOUT_S
    )
    print(json.dumps(document, indent=2, ensure_ascii=False) if args.as_json else hosts_text(document))
    listed = {entry["host"] for entry in document["hosts"]}
    missing = [name for name in names if name not in listed]
    among = f"{args.state} hosts" if args.state else "hosts"
    for name in missing:
        print(f"coretraffic: {name} is not among the {among} of the driver's newest route set", file=sys.stderr)
    return 1 if missing else 0


def _host_name_argument(name: str) -> str:
    """A HOST argument as the driver names hosts (lower case, A-labels); a name that is no host name, in lower
    case: the list shows a refused config's name as it came."""
    return host_or_label(name).lower()


def _cmd_confirm_removal(settings: Settings, args: argparse.Namespace) -> int:
    print(confirm_removal(_status_addr(settings), args.id))
    return 0


def _status_addr(settings: Settings) -> str:
    if not settings.status_addr:
        raise UsageError("--status-addr (or CORETRAFFIC_STATUS_ADDR) is empty: no status server to ask")
    return settings.status_addr
