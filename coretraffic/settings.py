"""Settings for `coretraffic run`: every option is a flag and a `CORETRAFFIC_*` environment variable.

Read once at start-up by `cli`; a bad value stops the driver with one line naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "coretraffic"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORETRAFFIC_", extra="ignore")

    routes: Path | None = Field(None, description="routes file (JSON); without it, routes come from Coreflow")
    coreflow_url: str = Field("http://coreflow:3000", description="Coreflow's URL (http -> ws, https -> wss)")
    caddy_admin: str | None = Field(
        None,
        description="admin API of an existing Caddy (unix//path or http://127.0.0.1:2019); "
        "without it coretraffic starts the bundled Caddy",
    )
    state_dir: Path = Field(default_factory=_default_state_dir, description="private state of the spawned Caddy")
    base_config: Path | None = Field(None, description="operator's Caddyfile (or .json) the servers merge into")
    http_port: int = Field(7999, ge=1, le=65535, description="port of the HTTP -> HTTPS redirect server")
    https_port: int = Field(8000, ge=1, le=65535, description="port of the HTTPS server")
    listen_host: str = Field("", description="address the two servers bind (empty: all)")
    http3: bool = Field(False, description="also serve HTTP/3 (UDP on the HTTPS port)")
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

    @field_validator("status_addr")
    @classmethod
    def _status_addr_is_host_port(cls, value: str) -> str:
        if value:
            host_port(value)
        return value


def host_port(address: str) -> tuple[str, int]:
    """`127.0.0.1:9180` or `[::1]:9180` -> (host, port); a ValueError names what is wrong."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port with a port 1-65535, got {address!r}")
    return host, int(port)
