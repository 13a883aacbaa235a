"""Settings for `coretraffic run`: every option is a flag and a `CORETRAFFIC_*` environment variable.

Read once at start-up by `cli`; a bad value stops the driver with one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_state_dir(name: str = "coretraffic") -> Path:
    """`$XDG_STATE_HOME/NAME` (`~/.local/state/NAME` without it)."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORETRAFFIC_", extra="ignore")

    routes: Path | None = Field(None, description="routes file (JSON); without it, routes come from Coreflow")
    coreflow_url: str = Field("http://coreflow:3000", description="Coreflow's URL (http -> ws, https -> wss)")
    caddy_admin: str | None = Field(
        None,
        description="admin API of an existing Caddy (unix//path, http://127.0.0.1:2019, or https://host:port "
        "through its admin gate, with mutual TLS); without it coretraffic starts the bundled Caddy",
    )
    admin_client_cert: Path | None = Field(
        None, description="the driver's client certificate (PEM) for an https admin address"
    )
    admin_client_key: Path | None = Field(None, description="the private key (PEM) of --admin-client-cert")
    admin_ca: Path | None = Field(
        None,
        validate_default=True,
        description="CA certificate(s) (PEM) an https admin address's server certificate must be signed by",
    )
    remote_admin_listen: str = Field(
        "unix//shared/admin.sock",
        description="the admin address a Caddy behind an https admin gate keeps for itself: every config loaded "
        "through the gate carries it, so the gate can still reach it",
    )
    state_dir: Path = Field(default_factory=default_state_dir, description="private state of the spawned Caddy")
    base_config: Path | None = Field(None, description="operator's Caddyfile (or .json) the servers merge into")
    http_port: int = Field(7999, ge=1, le=65535, description="port of the HTTP -> HTTPS redirect server")
    https_port: int = Field(8000, ge=1, le=65535, description="port of the HTTPS server")
    listen_host: str = Field("", description="address the two servers bind (empty: all)")
    http3: bool = Field(False, description="also serve HTTP/3 (UDP on the HTTPS port)")
    ocsp_stapling: bool = Field(
        False,
        description="staple OCSP responses: every load then fetches OCSP for each certificate with a responder URL "
        "and no fresh staple stored, before Caddy answers it",
    )
    upstream_dial_timeout: float = Field(2.0, gt=0, description="seconds a connection to an upstream may take")
    upstream_response_timeout: float = Field(
        10.0, gt=0, description="seconds an upstream may take to send its response head (a frozen one fails then)"
    )
    upstream_try_duration: float = Field(
        15.0,
        gt=0,
        description="seconds a request may spend retrying failed upstreams (keep it above the response timeout)",
    )
    upstream_fail_duration: float = Field(
        5.0, gt=0, description="seconds one failure keeps an upstream ip:port out of the selection"
    )
    stream_close_delay: float = Field(
        300.0,
        ge=0,
        description="seconds a WebSocket or other upgraded stream outlives the config it was opened under "
        "(0: a reload closes it); when the delay ends, the old config's remaining streams are closed at once",
    )
    bcrypt_cost: int = Field(10, ge=4, le=16, description="bcrypt cost of basic-auth password hashes")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="how much to log")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="log lines as JSON or text (auto: text on a terminal, JSON otherwise)"
    )
    status_addr: str = Field(
        "127.0.0.1:9180", description="host:port of the status server (/healthz /readyz /metrics /status); empty: off"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("caddy_admin")
    @classmethod
    def _caddy_admin_is_an_admin_address(cls, value: str | None) -> str | None:
        return admin_listen_address(value) if value else None

    @field_validator("admin_ca")
    @classmethod
    def _https_admin_has_its_tls_material(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if not str(info.data.get("caddy_admin") or "").startswith("https://"):
            return value
        given = {**info.data, "admin_ca": value}
        missing = [f"--{n.replace('_', '-')}" for n in _MUTUAL_TLS_FILES if given.get(n) is None]
        if missing:
            raise ValueError(f"an https --caddy-admin needs {', '.join(missing)} (mutual TLS) too")
        return value

    @field_validator("remote_admin_listen")
    @classmethod
    def _remote_admin_listen_is_local_to_that_caddy(cls, value: str) -> str:
        address = admin_listen_address(value)
        if address.startswith("https://"):
            raise ValueError("a Caddy's own admin address is a unix socket or loopback host:port, not https")
        return address

    @field_validator("https_port")
    @classmethod
    def _https_port_is_not_the_http_port(cls, value: int, info: ValidationInfo) -> int:
        if value == info.data.get("http_port"):
            raise ValueError(f"{value} is the HTTP port too (--http-port / CORETRAFFIC_HTTP_PORT); they must differ")
        return value

    @field_validator("status_addr")
    @classmethod
    def _status_addr_is_host_port(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        host, port = host_port(value)
        listen_host = info.data.get("listen_host", "")
        for name in ("http_port", "https_port"):
            if port == info.data.get(name) and (not listen_host or host in ("", "0.0.0.0", "::", listen_host)):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"port {port} is the data plane's {flag} (CORETRAFFIC_{name.upper()}) too")
        return value


# What an https admin address needs, in the order the error names them.
_MUTUAL_TLS_FILES = ("admin_client_cert", "admin_client_key", "admin_ca")


def admin_listen_address(text: str) -> str:
    """An `--caddy-admin` value in Caddy's own notation (`unix//abs/path` or `host:port`), or `https://host:port`
    for a Caddy behind an admin gate; a ValueError otherwise.

    Accepted: `unix//abs/path` (Caddy's notation; a `|mode` suffix is for Caddy's side and dropped), `host:port`
    and `http://host:port` on a loopback address, `https://host:port` anywhere. Plain HTTP elsewhere would send
    private keys across a network.
    """
    if text.startswith("unix:"):
        raise ValueError(f"{text!r} is a URL; Caddy writes a unix socket as unix//{text.partition(':')[2].lstrip('/')}")
    if text.startswith("unix/"):
        path = text.removeprefix("unix/").split("|", 1)[0]
        if not path.startswith("/"):
            raise ValueError(f"expected unix//absolute/path, got {text!r}")
        return f"unix/{path}"
    if text.startswith("/"):
        raise ValueError(f"{text!r} is a path; Caddy writes a unix socket as unix/{text}")
    if text.startswith("."):
        raise ValueError(f"{text!r} is a relative path; write the socket as unix//absolute/path")
    scheme, separator, rest = text.partition("://")
    if separator and scheme not in ("http", "https"):
        raise ValueError(f"expected unix//path, host:port, http://host:port or https://host:port, got {text!r}")
    address = (rest if separator else text).rstrip("/")
    host, _ = host_port(address)
    if scheme == "https":
        return f"https://{address}"
    if not _is_loopback(host):
        raise ValueError(f"{host} is not a loopback address: the admin API in plain HTTP only on loopback or a socket")
    return address


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port(address: str) -> tuple[str, int]:
    """`127.0.0.1:9180` or `[::1]:9180` -> (host, port); a ValueError names what is wrong."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port with a port 1-65535, got {address!r}")
    return host, int(port)
