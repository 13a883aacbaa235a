"""Settings for `coretraffic run`: every option is a flag and a `CORETRAFFIC_*` environment variable.

Read once at start-up by `cli`; a bad value stops the driver with one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_state_dir(name: str = "coretraffic") -> Path:
    """`$XDG_STATE_HOME/NAME` (`~/.local/state/NAME` without it)."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / name


@dataclass(frozen=True)
class AdminAddress:
    """Where a Caddy's admin API is reached: a unix socket, plain HTTP on loopback, or HTTPS (remote admin).

    `location` is the socket's absolute path, or `host:port` (an IPv6 host in brackets). An https address is a
    remote Caddy's admin gate (docs/caddy.md, "Remote admin"): that Caddy keeps its admin API on `own_listen`, the
    socket the gate proxies to, which every config loaded into it must carry (a load that moved it would cut the
    gate off). `server_name` is the name the gate's certificate carries when it is dialled by IP address (a
    discovered instance): sent as SNI and Host, which the gate requires to match.
    """

    kind: Literal["unix", "http", "https"]
    location: str
    own_listen: str | None = None
    server_name: str | None = None

    @property
    def is_remote(self) -> bool:
        """Reached over mutual TLS through an admin gate."""
        return self.kind == "https"

    @property
    def config_listen(self) -> str:
        """The `admin.listen` of every config loaded into this Caddy (`render.with_admin_listen`)."""
        return self.own_listen or self.listen

    @property
    def listen(self) -> str:
        """The address in Caddy's own notation (`unix//path`, `host:port`), as its `admin.listen` writes it."""
        return f"unix/{self.location}" if self.kind == "unix" else self.location

    @property
    def name(self) -> str:
        """How status, logs and replies name this Caddy."""
        return self.listen if self.kind == "unix" else f"{self.kind}://{self.location}"


def parse_admin_address(text: str) -> AdminAddress:
    """The one parser of admin addresses (`--caddy-admin`, discovered instances), or a ValueError saying why.

    Accepted: `unix//abs/path` (Caddy's notation; a `|mode` suffix is for Caddy's side and dropped), `host:port`
    and `http://host:port` on a loopback address, `https://host:port`. Plain HTTP elsewhere would send private keys
    across a network.
    """
    if text.startswith("unix:"):
        raise ValueError(f"{text!r} is a URL; Caddy writes a unix socket as unix//{text.partition(':')[2].lstrip('/')}")
    if text.startswith("unix/"):
        path = text.removeprefix("unix/").split("|", 1)[0]
        if not path.startswith("/"):
            raise ValueError(f"expected unix//absolute/path, got {text!r}")
        return AdminAddress("unix", path)
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
        return AdminAddress("https", address)
    if not _is_loopback(host):
        raise ValueError(
            f"{host} is not a loopback address: the admin API in plain HTTP only on loopback or a socket "
            "(https:// for a remote Caddy)"
        )
    return AdminAddress("http", address)


@dataclass(frozen=True)
class DnsTarget:
    """A `--caddy-admin-dns` name: each of its A/AAAA records is one Caddy, reached at `scheme://ip:port`."""

    scheme: Literal["http", "https"]
    name: str
    port: int

    def address_of(self, ip: str) -> AdminAddress:
        """The admin address of the instance at `ip` (parsed, so plain HTTP to a non-loopback IP is refused); an
        https one's gate is named by this name, as no certificate can list pod addresses ahead of time."""
        host = f"[{ip}]" if ":" in ip else ip
        address = parse_admin_address(f"{self.scheme}://{host}:{self.port}")
        return replace(address, server_name=self.name) if address.is_remote else address


DEFAULT_ADMIN_PORT = 2019


def parse_dns_target(text: str) -> DnsTarget:
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "http", text
    if scheme not in ("http", "https"):
        raise ValueError(f"expected [http://|https://]NAME[:PORT], got {text!r}")
    name, _, port = rest.rstrip("/").partition(":")
    if not name or "/" in name or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
        raise ValueError(f"expected [http://|https://]NAME[:PORT] with a port 1-65535, got {text!r}")
    return DnsTarget("https" if scheme == "https" else "http", name, int(port) if port else DEFAULT_ADMIN_PORT)


# The reference client (TypedSocket.createClient) connects to port 3000 when the URL names none.
COREFLOW_DEFAULT_PORT = 3000


def parse_coreflow_url(text: str) -> tuple[str, str, int]:
    """`http(s)://host[:port]` (or ws, wss) -> (WebSocket scheme, host as a URL writes it, port), or a ValueError
    saying why. The one parser of Coreflow's URL: checked at start, used by the session."""
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"Coreflow URL must be http(s)://host[:port], got {text!r}")
    if parts.path not in ("", "/"):
        # socket.io-client would read a path as a namespace; smartsocket only uses the default one.
        raise ValueError(f"Coreflow URL must not have a path, got {text!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, host, parts.port or COREFLOW_DEFAULT_PORT


def _listed(value: str | list[object] | tuple[object, ...]) -> tuple[str, ...]:
    """A repeated flag's values, or a variable's comma-separated ones."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(item.strip() for item in items if item.strip())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORETRAFFIC_", extra="ignore")

    routes: Path | None = Field(None, description="routes file (JSON); without it, routes come from Coreflow")
    coreflow_url: str = Field(
        "http://coreflow:3000",
        description="Coreflow's URL, http(s)://host[:port] without a path (port 3000 when none; https: over TLS)",
    )
    caddy_admin: Annotated[tuple[AdminAddress, ...], NoDecode] = Field(
        (),
        description="admin API of an existing Caddy (unix//path, http://127.0.0.1:2019, or https://host:port "
        "through its admin gate, with mutual TLS), repeatable (the variable: comma-separated); with none (and no "
        "--caddy-admin-dns) coretraffic starts the bundled Caddy",
    )
    caddy_admin_dns: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="[http://|https://]NAME[:PORT] whose A/AAAA records are Caddy instances to drive, repeatable "
        "(the variable: comma-separated); the port defaults to 2019; https: each instance's admin gate, dialled "
        "by IP address with NAME as its TLS server name",
    )
    caddy_admin_dns_server: str = Field(
        "", description="DNS server (host:port) asked for --caddy-admin-dns (empty: the system's resolvers)"
    )
    caddy_admin_dns_interval: float = Field(
        5.0, gt=0, description="seconds between lookups of --caddy-admin-dns (new instances get the current set)"
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
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="private state (0700): the spawned Caddy's, the certificates the driver checked (which diff, "
        "check and render read too) and the names of the hosts it serves (for the mass-removal guard)",
    )
    base_config: Path | None = Field(
        None,
        description="the operator's Caddyfile (or Caddy JSON, named *.json) into which the driver's servers are merged",
    )
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
    removal_confirm_after: float = Field(
        300.0,
        ge=0,
        description="seconds after which a set that again removes hosts a mass-removal guard held back removes "
        "them (more than half of the served hosts, 10 or more, or all of them with none in their place); "
        "0: never held back",
    )
    traffic_metrics: Literal["off", "server", "per_host"] = Field(
        "per_host",
        description="Caddy's request metrics: per_host (a host label, bounded to the loaded names by strict SNI "
        "host matching), server (per server only) or off",
    )
    caddy_metrics_listen: str = Field(
        "127.0.0.1:9181",
        description="host:port where Caddy serves its own /metrics on a listener of its own (never the admin API); "
        "empty: none",
    )
    access_log: Literal["off", "errors", "all"] = Field(
        "off", description="Caddy's access log (JSON): off, errors (5xx answers only) or all requests"
    )
    access_log_sample: int = Field(
        1,
        ge=1,
        description="access log sampling: per second the first 100 lines, then one in N (1: every line)",
    )
    access_log_skip_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="hosts whose requests are not access-logged, repeatable (the variable: comma-separated)"
    )
    bcrypt_cost: int = Field(10, ge=4, le=16, description="bcrypt cost of basic-auth password hashes")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the least severe log level written"
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="log lines as JSON or text (auto: text on a terminal, JSON otherwise)"
    )
    status_addr: str = Field(
        "127.0.0.1:9180",
        description="host:port of the status server (/healthz /readyz /metrics /status /hosts); empty: off",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("coreflow_url")
    @classmethod
    def _coreflow_url_is_usable(cls, value: str) -> str:
        parse_coreflow_url(value)
        return value

    @field_validator("caddy_admin", mode="before")
    @classmethod
    def _caddy_admin_are_admin_addresses(cls, value: object) -> object:
        return tuple(map(parse_admin_address, _listed(value))) if isinstance(value, str | list | tuple) else value

    @field_validator("caddy_admin_dns", mode="before")
    @classmethod
    def _caddy_admin_dns_are_names(cls, value: object) -> object:
        if not isinstance(value, str | list | tuple):
            return value
        names = _listed(value)
        for name in names:
            parse_dns_target(name)
        return names

    @field_validator("access_log_skip_hosts", mode="before")
    @classmethod
    def _skip_hosts_are_listed(cls, value: object) -> object:
        return tuple(h.lower() for h in _listed(value)) if isinstance(value, str | list | tuple) else value

    @field_validator("caddy_metrics_listen")
    @classmethod
    def _metrics_listen_is_its_own_port(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        _refuse_data_plane_port(host_port(value)[1], info.data)
        return value

    @field_validator("caddy_admin_dns_server")
    @classmethod
    def _dns_server_is_host_port(cls, value: str) -> str:
        if value:
            host_port(value)
        return value

    @property
    def spawns_caddy(self) -> bool:
        """No Caddy named, none to discover: the driver runs the bundled Caddy itself (the single-pod default)."""
        return not self.caddy_admin and not self.caddy_admin_dns

    @field_validator("admin_ca")
    @classmethod
    def _https_admin_has_its_tls_material(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        remote = _first_https(info.data.get("caddy_admin", ()), info.data.get("caddy_admin_dns", ()))
        if remote is None:
            return value
        given = {**info.data, "admin_ca": value}
        missing = [f"--{n.replace('_', '-')}" for n in _MUTUAL_TLS_FILES if given.get(n) is None]
        if missing:
            raise ValueError(f"{remote} needs {', '.join(missing)} (mutual TLS) too")
        return value

    @field_validator("remote_admin_listen")
    @classmethod
    def _remote_admin_listen_is_local_to_that_caddy(cls, value: str) -> str:
        address = parse_admin_address(value)
        if address.kind == "https":
            raise ValueError("a Caddy's own admin address is a unix socket or loopback host:port, not https")
        return address.listen

    @property
    def admin_over_tls(self) -> bool:
        """Some Caddy is reached through an admin gate (mutual TLS): the material is then required, and read."""
        return _first_https(self.caddy_admin, self.caddy_admin_dns) is not None

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
        metrics_listen = info.data.get("caddy_metrics_listen")
        if metrics_listen and host_port(metrics_listen)[1] == port:
            raise ValueError(f"port {port} is Caddy's metrics listener (--caddy-metrics-listen) too")
        listen_host = info.data.get("listen_host", "")
        if not listen_host or host in ("", "0.0.0.0", "::", listen_host):  # the same address as the data plane's
            _refuse_data_plane_port(port, info.data)
        return value


def _refuse_data_plane_port(port: int, given: dict[str, object]) -> None:
    """A listener of the driver's or Caddy's own may not take the HTTP or HTTPS port."""
    for name in ("http_port", "https_port"):
        if port == given.get(name):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"port {port} is the data plane's {flag} (CORETRAFFIC_{name.upper()}) too")


# What an https admin address needs, in the order the error names them.
_MUTUAL_TLS_FILES = ("admin_client_cert", "admin_client_key", "admin_ca")


def _first_https(addresses: tuple[AdminAddress, ...], dns_names: tuple[str, ...]) -> str | None:
    """The first admin address or discovery name reached over mutual TLS, with its flag; None: there is none."""
    remote = [f"--caddy-admin {a.name}" for a in addresses if a.is_remote] + [
        f"--caddy-admin-dns {n}" for n in dns_names if parse_dns_target(n).scheme == "https"
    ]
    return remote[0] if remote else None


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
