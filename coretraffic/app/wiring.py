"""From settings to the parts of the loop that `run` and the one-shot commands (`render`, `diff`) share.

Kept apart from `service` so that a one-shot command gets the same renderer as `run` without loading what only
a running driver needs (the Coreflow client, the status server, the reconciler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from coretraffic import __version__
from coretraffic.caddy.adapt import load_base_config
from coretraffic.caddy.admin import AdminAddress, CaddyAdmin
from coretraffic.caddy.admin_tls import transport_for
from coretraffic.caddy.process import find_caddy_binary, spawned_admin_address
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import RenderSettings, render
from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import Route
from coretraffic.settings import Settings


def go_duration(seconds: float) -> str:
    """`seconds` as a Go duration string Caddy parses: `3600s`, `0.5s`, never an exponent (`{:g}` gives
    `1e+06s` for 1,000,000)."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def admin_address(settings: Settings) -> AdminAddress:
    """The admin API coretraffic drives: `--caddy-admin`, or the socket of the Caddy it spawns."""
    if settings.caddy_admin and settings.caddy_admin.startswith("https://"):
        return AdminAddress(settings.caddy_admin, own_listen=settings.remote_admin_listen)
    if settings.caddy_admin:
        return AdminAddress(settings.caddy_admin)
    return spawned_admin_address(settings.state_dir)


def admin_client(settings: Settings) -> CaddyAdmin:
    """A client of that admin API; an https one refused here, at start, without readable mutual-TLS material."""
    address = admin_address(settings)
    return CaddyAdmin(address, transport_for(address, settings))


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
