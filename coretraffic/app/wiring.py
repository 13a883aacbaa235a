"""From settings to the parts of the loop that `run` and the one-shot commands (`render`, `diff`) share.

Kept apart from `service` so that a one-shot command gets the same renderer as `run` without loading what only
a running driver needs (the Coreflow client, the status server, the reconciler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from coretraffic import __version__
from coretraffic.caddy.adapt import load_base_config
from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddy.admin_tls import gate_transport, mutual_tls_context
from coretraffic.caddy.process import find_caddy_binary, spawned_admin_address
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import RenderSettings, render, with_admin_listen
from coretraffic.caddyjson.traffic import TrafficSettings
from coretraffic.caddyjson.withheld import with_withheld
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route, Validation
from coretraffic.errors import UsageError
from coretraffic.settings import AdminAddress, Settings
from coretraffic.sources.checked_pairs_file import FILE_NAME, CheckedPairsFile
from coretraffic.sources.served_hosts_file import FILE_NAME as SERVED_HOSTS_FILE
from coretraffic.sources.served_hosts_file import ServedHostsFile


def go_duration(seconds: float) -> str:
    """`seconds` as a Go duration string Caddy parses: `3600s`, `0.5s`, never an exponent (`{:g}` gives
    `1e+06s` for 1,000,000)."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def checked_pairs_record(settings: Settings) -> CheckedPairsFile:
    """Where `run` keeps the certificates it checked (in the state directory, also when it drives existing
    Caddies), and where the one-shot commands and the driver's next start find them."""
    return CheckedPairsFile(settings.state_dir / FILE_NAME)


def served_hosts_record(settings: Settings) -> ServedHostsFile:
    """Where `run` keeps the names of the hosts it serves, for the removal guard of its next start."""
    return ServedHostsFile(settings.state_dir / SERVED_HOSTS_FILE)


def admin_address(settings: Settings) -> AdminAddress:
    """The one admin API a one-shot command (`render`, `diff`) looks at: `--caddy-admin`, or the spawned Caddy's."""
    if settings.caddy_admin_dns or len(settings.caddy_admin) > 1:
        raise UsageError("this command looks at one Caddy: give one --caddy-admin (and no --caddy-admin-dns)")
    if settings.caddy_admin:
        return behind_its_gate(settings.caddy_admin[0], settings)
    return spawned_admin_address(settings.state_dir)


def behind_its_gate(address: AdminAddress, settings: Settings) -> AdminAddress:
    """`address` with the admin address its Caddy keeps for itself when it is reached through an admin gate."""
    return replace(address, own_listen=settings.remote_admin_listen) if address.is_remote else address


class AdminClients:
    """Makes the admin client of each Caddy driven: plain for a socket or loopback, mutual TLS for an admin gate.

    The mutual-TLS material is read once, when this is made (at start: unreadable material stops the driver
    there), and shared by every gate's client, the ones of Caddies discovered later too.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tls = mutual_tls_context(settings) if settings.admin_over_tls else None

    def __call__(self, address: AdminAddress) -> CaddyAdmin:
        if not address.is_remote:
            return CaddyAdmin(address)
        if self._tls is None:  # only for settings made without validation: raises, naming what is missing
            self._tls = mutual_tls_context(self._settings)
        # A discovered gate is dialled by IP address under its service's name (`server_name`).
        transport = gate_transport(self._tls, server_name=address.server_name)
        return CaddyAdmin(behind_its_gate(address, self._settings), transport)


def admin_client(settings: Settings) -> CaddyAdmin:
    """A client of the one admin API a one-shot command looks at (`admin_address`)."""
    return AdminClients(settings)(admin_address(settings))


def renderer_settings(settings: Settings) -> RenderSettings:
    """What render needs of the settings, durations in Go's notation."""
    return RenderSettings(
        version=__version__,
        http_port=settings.http_port,
        https_port=settings.https_port,
        listen_host=settings.listen_host,
        http3=settings.http3,
        ocsp_stapling=settings.ocsp_stapling,
        upstream_dial_timeout=go_duration(settings.upstream_dial_timeout),
        upstream_response_timeout=go_duration(settings.upstream_response_timeout),
        upstream_try_duration=go_duration(settings.upstream_try_duration),
        upstream_fail_duration=go_duration(settings.upstream_fail_duration),
        stream_close_delay=go_duration(settings.stream_close_delay),
        traffic=TrafficSettings(
            metrics=settings.traffic_metrics,
            metrics_listen=settings.caddy_metrics_listen,
            access_log=settings.access_log,
            access_log_sample=settings.access_log_sample,
            access_log_skip_hosts=settings.access_log_skip_hosts,
        ),
    )


def make_renderer(settings: Settings) -> Callable[[Sequence[Route]], JSON]:
    """The route set -> Caddy JSON function for these settings (base config loaded, password hasher made).

    The JSON names no admin address: whoever loads it into a Caddy adds that Caddy's (`render.with_admin_listen`).
    """
    caddy_binary = find_caddy_binary()
    base = load_base_config(settings.base_config, caddy_binary, settings.http_port, settings.https_port)
    render_settings = renderer_settings(settings)
    hasher = BcryptHasher(settings.bcrypt_cost)

    def render_routes(routes: Sequence[Route]) -> JSON:
        return render(routes, render_settings, base, hasher)

    return render_routes


def as_loaded(renderer: Callable[[Sequence[Route]], JSON], validation: Validation, listen: str) -> JSON:
    """The config `run` would load for `validation` into the Caddy whose admin API is `listen`: rendered, the
    refused names a wildcard would take withheld, the admin address set (what `render` and `diff` show)."""
    return with_admin_listen(with_withheld(renderer(validation.routes), validation.refused), listen)
