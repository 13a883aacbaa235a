"""Caddies found by DNS (`--caddy-admin-dns`): a name whose A/AAAA records are the Caddy instances.

A Kubernetes headless Service and Swarm's `tasks.<service>` answer with one record per instance. The name is
looked up every `interval` seconds (dnspython, without a cache of its own: every lookup asks the server) and
the fleet's discovered members are made those instances (`Fleet.replace_discovered`): a new one gets the latest
set at once, a vanished one is dropped from the fleet and from status. A name that does not exist or has no
records means no instances; a lookup that fails (timeout, server failure) changes nothing, so a DNS hiccup never
drops a Caddy. An instance whose address cannot be driven (plain HTTP to a non-loopback address) is left out
and named in `/status`. An `https://` name's instances are admin gates, dialled by IP address with the name as
TLS server name and Host (`DnsTarget.address_of`): each gate's certificate carries the name, not an address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from coretraffic.reconcile.fleet import Fleet, TargetFactory
from coretraffic.settings import AdminAddress, DnsTarget, host_port

log = logging.getLogger("coretraffic.discovery")

_LOOKUP_TIMEOUT_S = 2.0
_NO_INSTANCES = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


class DnsDiscovery:
    def __init__(
        self, target: DnsTarget, fleet: Fleet, make_target: TargetFactory, *, server: str = "", interval: float = 5.0
    ) -> None:
        self._target = target
        self._fleet = fleet
        self._make_target = make_target
        self._interval = interval
        self._resolver = dns.asyncresolver.Resolver(configure=not server)
        # With the system's resolvers, their search list too, as getaddrinfo would: a Kubernetes Service's short
        # name (`caddy-admin`) is found only through it. A server given is asked for the name as written.
        self._search = not server
        if server:
            host, port = host_port(server)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        self._resolver.lifetime = _LOOKUP_TIMEOUT_S
        self._instances: tuple[str, ...] = ()
        self._refused: dict[str, str] = {}
        self._problem = ""

    async def run(self) -> None:
        while True:
            await self.look_up()
            await asyncio.sleep(self._interval)

    async def look_up(self) -> None:
        """Look the name up once and make the fleet's members from this name what it says."""
        try:
            ips = await self._addresses()
        except dns.exception.DNSException as exc:
            if not self._problem:
                log.warning(
                    "looking up %s failed, keeping its %d caddies: %s", self._target.name, len(self._instances), exc
                )
            self._problem = f"lookup failed: {exc}"
            return
        self._problem = ""
        addresses: list[AdminAddress] = []
        refused: dict[str, str] = {}
        for ip in ips:
            try:
                addresses.append(self._target.address_of(ip))
            except ValueError as exc:
                refused[ip] = str(exc)
        for ip in refused.keys() - self._refused.keys():
            log.error("caddy at %s (from %s) is not driven: %s", ip, self._target.name, refused[ip])
        self._refused = refused
        self._instances = tuple(address.name for address in addresses)
        await self._fleet.replace_discovered(addresses, self._make_target, source=self._target.name)

    async def _addresses(self) -> list[str]:
        found: list[str] = []
        for record_type in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(self._target.name, record_type, search=self._search)
            except _NO_INSTANCES:
                continue
            found.extend(record.to_text() for record in answer)
        return sorted(set(found))

    def description(self) -> dict[str, Any]:
        return {
            "dns": f"{self._target.scheme}://{self._target.name}:{self._target.port}",
            "instances": list(self._instances),
            "not_driven": [f"{ip}: {why}" for ip, why in sorted(self._refused.items())],
            "problem": self._problem,
        }
