"""`coretraffic diff`: what a route set would change in the running Caddy, before it happens.

A dry run of the loop's last stop. The route set goes through the same validation (spread over the cores by
`parallel`) and renderer (`wiring.make_renderer`) as `run`; the result is compared with what Caddy runs
(`GET /config/`) by the pure `coretraffic.diff` and printed as a plan per host, then, with `--full`, as a unified
diff of the two Caddy JSON documents with every secret replaced by a fingerprint.

Exit codes follow `diff`/`kubectl diff`: 0 nothing would change, 1 something would (a rejected host counts: the
set differs from what runs), 2 the diff could not be made.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
from typing import Any

from coretraffic.app.wiring import admin_address, admin_client, as_loaded, checked_pairs_record, make_renderer
from coretraffic.cli.driver_settings import Beside
from coretraffic.cli.routes import required_routes
from coretraffic.diff.plan import Plan, plan_diff
from coretraffic.diff.report import format_json, format_text
from coretraffic.diff.unified import full_diff
from coretraffic.errors import CaddyError, CaddyUnreachable, UserError
from coretraffic.settings import Settings
from coretraffic.sources.parallel import validate_on_cores
from coretraffic.sources.routes_file import read_routes_document
from coretraffic.sources.trust_store import system_roots

EXIT_SAME, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2


async def run_diff(settings: Settings, *, full: bool, as_json: bool, beside: Beside | None = None) -> int:
    """`coretraffic diff`: read the routes and the running config, print the plan; exit 0 same, 1 changes, 2 error.
    `beside`: the driver whose recorded settings were taken, if any (named in the hint when Caddy is not there)."""
    try:
        routes = required_routes(settings)
        address = admin_address(settings)
        # The cheapest bcrypt cost: desired hashes are never compared (another cost, so another hash), passwords are
        # checked against the running hashes instead; at the configured cost each authed host would cost 60 ms.
        renderer = make_renderer(settings.model_copy(update={"bcrypt_cost": 4}))
        document = read_routes_document(routes)
        now = datetime.datetime.now(datetime.UTC)
        # Caddy serialises its config (11 MB at 10,000 routes) while the routes are validated (about 1 s).
        validation, running = await asyncio.gather(
            validate_on_cores(document, now, record=checked_pairs_record(settings), roots=system_roots()),
            _running_config(settings),
        )
        desired = as_loaded(renderer, validation, address.config_listen)
    except CaddyUnreachable as exc:
        print(
            f"coretraffic: no Caddy admin API at {exc.address} ({exc.reason}): {_what_to_do(settings, beside)}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except (UserError, CaddyError, json.JSONDecodeError) as exc:  # the last: Caddy's answer was not JSON
        print(f"coretraffic: diff: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
    plan = plan_diff(running, desired, validation)
    _print_plan(plan, full=full, as_json=as_json)
    return EXIT_CHANGES if plan.has_changes else EXIT_SAME


def _what_to_do(settings: Settings, beside: Beside | None) -> str:
    """The hint for an admin API that does not answer, from where its address came."""
    if settings.caddy_admin:
        return "is that Caddy running? give --caddy-admin of one that is, or --state-dir of the driver of one"
    if beside is None:
        return (
            f"no driver that spawns its Caddy runs on state dir {settings.state_dir}; give --state-dir of the running "
            "driver, or --caddy-admin"
        )
    if not beside.record.spawns_caddy:
        return f"{beside} drives Caddies it is given or discovers, not one of its own; give --caddy-admin of one"
    if beside.running:
        return f"{beside} has no Caddy answering now (starting or restarting it?); try again, or read its log"
    return f"{beside}; start it, or give --state-dir of the running driver, or --caddy-admin"


async def _running_config(settings: Settings) -> Any:
    admin = admin_client(settings)
    try:
        return await admin.get_config()
    finally:
        await admin.aclose()


def _print_plan(plan: Plan, *, full: bool, as_json: bool) -> None:
    # Colour only for a person at a terminal; https://no-color.org: any non-empty NO_COLOR turns it off.
    colour = not as_json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    text = full_diff(plan, colour=colour) if full else None
    sys.stdout.write(format_json(plan, full=text) if as_json else format_text(plan, colour=colour) + (text or ""))
