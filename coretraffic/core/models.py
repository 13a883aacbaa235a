"""Wire types: what Coreflow sends (`IReverseProxyConfig`) and what a routes file holds.

First stop of the loop: raw JSON becomes typed objects here, nothing more. Type checks are strict (a port given
as `true` or `"8080"` is an error, not a guess); the meaning checks (DNS names, PEMs, ...) live in `validate`.
Secrets are `SecretStr`, so a stray `repr()` or log line shows `**********`, never a key or a password.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from coretraffic.errors import RouteSetError


class _WireModel(BaseModel):
    # Coreflow may add fields in newer versions: ignore them rather than reject the route (`wire_fields` reports
    # them). Only the wire names populate a field: `password` for `pass` would be a typo read as meant.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=False)


class BasicAuthentication(_WireModel):
    type: Literal["Basic"]
    user: str
    password: SecretStr = Field(alias="pass")


class ReverseProxyConfig(_WireModel):
    """One host as Coreflow describes it (camelCase on the wire)."""

    host_name: str = Field(alias="hostName")
    destination_ips: list[str] = Field(alias="destinationIps")
    destination_ports: list[int] = Field(alias="destinationPorts")
    private_key: SecretStr = Field(alias="privateKey")
    public_key: str = Field(alias="publicKey")
    authentication: BasicAuthentication | None = None


def route_set_items(document: Any) -> list[Any]:
    """The list of raw configs in a route set: a JSON array, or an object with `reverseConfigs`."""
    if isinstance(document, dict):
        if "reverseConfigs" not in document:
            raise RouteSetError("expected a JSON array of configs or an object with 'reverseConfigs'")
        document = document["reverseConfigs"]
    if not isinstance(document, list):
        raise RouteSetError(f"'reverseConfigs' must be a list of configs, got {type(document).__name__}")
    return document
