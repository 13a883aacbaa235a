"""Remote admin over mutual TLS: `/load` of one route set through each way of reaching a remote Caddy, against
the same `/load` over the local unix socket, alternated in one run; and whether a failed load cuts the way off.

The ways (docs/caddy.md, "Remote admin"):
- `gate`: the admin gate (deploy/admin-gate.json), a Caddy process of its own requiring client certificates and
  proxying to the data-plane Caddy's admin socket. The loaded config never contains it.
- `front`: the same server inside the data-plane Caddy's own config, so every load carries (and replaces) it.
- `remote`: Caddy's experimental `admin.remote`, server certificate from the `internal` issuer with the operator's
  CA, the driver's certificate in `access_control`; every load carries the `admin` block with it.

`python -m benchmarks.remote_admin` prints every way's figures; the suite keeps the gate's row.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from benchmarks.harness import Bed, bed, free_port, hosts
from coretraffic.caddy.admin import AdminAddress, CaddyAdmin, LoadTimeout
from coretraffic.caddy.admin_tls import transport_for
from coretraffic.caddy.process import find_caddy_binary
from coretraffic.caddyjson.layout import JSON
from coretraffic.caddyjson.render import serialise
from coretraffic.errors import CaddyError
from coretraffic.settings import Settings
from coretraffic.testing.admin_gate import MutualTLSFiles, gate_config, running_gate, write_mutual_tls
from coretraffic.testing.pki import DemoCA

# A load through `front` is answered only once the old servers have shut down: at most this (the shipped base
# Caddyfile's grace_period), or never with Caddy's default of none.
FRONT_GRACE_PERIOD = "10s"
SERVER_NAME = "localhost"
GATE_FILE = Path(__file__).resolve().parents[1] / "deploy" / "admin-gate.json"


@dataclass
class Way:
    name: str
    admin: CaddyAdmin
    # The data-plane config as this way must load it (the in-config parts added).
    shape: Callable[[JSON], JSON]


@dataclass
class Figures:
    name: str
    load_ms: list[float]
    failures: list[str]  # loads that did not come back 200
    after_rejected: str  # what the next good load through this way did after a rejected one
    after_failed_start: str  # ... after a load Caddy refused while starting it (a port in use)
    after_broken_way: str  # ... after a load whose own part of the way is wrong ("" for the gate: it has none)


@dataclass
class Row:
    routes: int
    gate_s: float
    local_s: float

    @property
    def ratio(self) -> float:
        return self.gate_s / self.local_s


def _settings(port: int, files: MutualTLSFiles, own_listen: str) -> Settings:
    return Settings.model_validate(
        {
            "caddy_admin": f"https://{SERVER_NAME}:{port}",
            "admin_client_cert": files.driver_cert,
            "admin_client_key": files.driver_key,
            "admin_ca": files.ca,
            "remote_admin_listen": own_listen,
        }
    )


def _remote_client(port: int, files: MutualTLSFiles, own_listen: str) -> CaddyAdmin:
    settings = _settings(port, files, own_listen)
    address = AdminAddress(f"https://{SERVER_NAME}:{port}", own_listen=own_listen)
    return CaddyAdmin(address, transport_for(address, settings), load_timeout=LoadTimeout(base_s=30))


def _gate_config(port: int, own_listen: str, files: MutualTLSFiles) -> JSON:
    config: JSON = gate_config(json.loads(GATE_FILE.read_text()), port=port, admin_socket=own_listen, files=files)
    return config


def _with_front(config: JSON, port: int, own_listen: str, files: MutualTLSFiles) -> JSON:
    http = config["apps"]["http"]
    tls = config["apps"]["tls"]
    certificates = {**tls.get("certificates", {}), "load_files": [
        {"certificate": str(files.directory / "tls.crt"), "key": str(files.directory / "tls.key")}
    ]}  # fmt: skip
    front = _gate_config(port, own_listen, files)["apps"]["http"]["servers"]["admin_gate"]
    servers = {**http["servers"], "admin_front": front}
    apps = {
        **config["apps"],
        "http": {**http, "servers": servers, "grace_period": FRONT_GRACE_PERIOD},
        "tls": {**tls, "certificates": certificates},
    }
    return {**config, "apps": apps}


def _with_remote(config: JSON, port: int, files: MutualTLSFiles, ca_key: Path) -> JSON:
    driver_der = x509.load_pem_x509_certificate(files.driver_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    admin = {
        **config["admin"],
        "identity": {"identifiers": [SERVER_NAME], "issuers": [{"module": "internal", "ca": "operator"}]},
        "remote": {
            "listen": f"127.0.0.1:{port}",
            "access_control": [{"public_keys": [base64.b64encode(driver_der).decode()]}],
        },
    }
    pki = {
        "certificate_authorities": {
            "operator": {"install_trust": False, "root": {"certificate": str(files.ca), "private_key": str(ca_key)}}
        }
    }
    return {**config, "admin": admin, "apps": {**config["apps"], "pki": pki}}


@contextmanager
def _material() -> Iterator[tuple[MutualTLSFiles, Path]]:
    with tempfile.TemporaryDirectory(prefix="ct-mtls-") as tmp:
        ca = DemoCA("coretraffic admin CA")
        files = write_mutual_tls(Path(tmp) / "tls", ca, SERVER_NAME)
        ca_key = Path(tmp) / "ca.key"
        ca_key.write_text(ca.private_key_pem)
        yield files, ca_key


async def _timed_load(way: Way, config: JSON, *, shaped: bool = False) -> tuple[float, str | None]:
    body = serialise(config if shaped else way.shape(config))
    started = time.perf_counter()
    try:
        await way.admin.load(body)
    except CaddyError as exc:
        return (time.perf_counter() - started) * 1000, f"{exc.__class__.__name__}: {str(exc)[:160]}"
    return (time.perf_counter() - started) * 1000, None


def _sets(b: Bed, size: int, label: str, count: int) -> Iterator[JSON]:
    shared = b.configs(hosts(size - 1))
    for round_ in range(count):
        yield b.render(b.routes([*shared, *b.configs([f"{label}{round_}.bench.test"])]))


def _rejected(config: JSON) -> JSON:
    """Refused while provisioning: a certificate that is not PEM."""
    tls = config["apps"]["tls"]
    pems = [{**tls["certificates"]["load_pem"][0], "certificate": "not a certificate"}]
    return {**config, "apps": {**config["apps"], "tls": {**tls, "certificates": {"load_pem": pems}}}}


def _failed_start(config: JSON, taken_port: int) -> JSON:
    """Refused while starting: a server on a port another process holds."""
    http = config["apps"]["http"]
    taken = {"listen": [f"127.0.0.1:{taken_port}"], "routes": [], "automatic_https": {"disable": True}}
    return {**config, "apps": {**config["apps"], "http": {**http, "servers": {**http["servers"], "taken": taken}}}}


def _broken_way(name: str, shaped: JSON, taken_port: int) -> JSON | None:
    """`shaped` (a config as `name` loads it) with that way's own part made wrong: the front server on a port in
    use, `admin.remote` with a public key that is not base64. None for the gate, which is in no loaded config."""
    if name == "front":
        front = shaped["apps"]["http"]["servers"]["admin_front"]
        front["listen"] = [f"127.0.0.1:{taken_port}"]
        return shaped
    if name == "remote":
        shaped["admin"]["remote"]["access_control"] = [{"public_keys": ["not base64!"]}]
        return shaped
    return None


async def _lockout(way: Way, broken: JSON, good: JSON, *, shaped: bool = False) -> str:
    """Load `broken` through `way`, then a good set: what came back."""
    _, error = await _timed_load(way, broken, shaped=shaped)
    _, after = await _timed_load(way, good)
    return f"broken load: {error or 'accepted'}; next good load: {after or 'ok'}"


async def compare(size: int, rounds: int, ways: tuple[str, ...]) -> list[Figures]:
    """Every way in `ways` against its own fresh Caddy, in turn, with the local socket alternated inside each."""
    found = []
    for name in ways:
        async with bed() as b:
            with _material() as (files, ca_key), _holder() as taken_port:
                port = free_port()
                own = b.caddy.admin_address.listen
                local = Way("local", b.admin, lambda c: c)
                gate_cm = (
                    running_gate(find_caddy_binary(), _gate_config(port, own, files), port, files.directory / "g.json")
                    if name == "gate"
                    else _nothing()
                )
                with gate_cm:
                    shape = _shape(name, port, own, files, ca_key)
                    first = next(_sets(b, size, "first", 1))
                    await b.admin.load(serialise(shape(first)))  # over the socket: bring the way up
                    way = Way(name, _remote_client(port, files, own), shape)
                    try:
                        await _wait_answering(way.admin)
                        timings: dict[str, list[float]] = {"local": [], name: []}
                        failures: list[str] = []
                        sets = _sets(b, size, name, 2 * rounds + 6)
                        for _ in range(rounds):
                            for each in (way, Way("local", local.admin, shape)):
                                ms, error = await _timed_load(each, next(sets))
                                timings[each.name].append(ms)
                                if error:
                                    failures.append(f"{each.name}: {error}")
                        after_rejected = await _lockout(way, _rejected(next(sets)), next(sets))
                        after_start = await _lockout(way, _failed_start(next(sets), taken_port), next(sets))
                        broken_way = _broken_way(name, way.shape(next(sets)), taken_port)
                        after_way = (
                            "" if broken_way is None else await _lockout(way, broken_way, next(sets), shaped=True)
                        )
                        found.append(Figures(name, timings[name], failures, after_rejected, after_start, after_way))
                        found.append(Figures(f"local (beside {name})", timings["local"], [], "", "", ""))
                    finally:
                        await way.admin.aclose()
    return found


def _shape(name: str, port: int, own: str, files: MutualTLSFiles, ca_key: Path) -> Callable[[JSON], JSON]:
    if name == "front":
        return lambda config: _with_front(config, port, own, files)
    if name == "remote":
        return lambda config: _with_remote(config, port, files, ca_key)
    return lambda config: config


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _holder() -> Iterator[int]:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


async def _wait_answering(admin: CaddyAdmin, deadline_s: float = 30) -> None:
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            await admin.ping()
            return
        except CaddyError:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.05)


async def measure(size: int, rounds: int) -> Row:
    """The suite's row: the gate against the local socket, medians."""
    (gate, local) = [f for f in await compare(size, rounds, ("gate",)) if f.name in ("gate", "local (beside gate)")]
    return Row(size, statistics.median(gate.load_ms) / 1000, statistics.median(local.load_ms) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ways", nargs="+", default=["gate", "front", "remote"])
    args = parser.parse_args()
    for figures in asyncio.run(compare(args.routes, args.rounds, tuple(args.ways))):
        median = statistics.median(figures.load_ms) if figures.load_ms else float("nan")
        runs = ", ".join(f"{ms:.0f}" for ms in figures.load_ms)
        print(f"{figures.name}: median {median:.0f} ms ({runs})")
        for failure in figures.failures:
            print(f"    failed: {failure}")
        if figures.after_rejected:
            print(f"    rejected set -> {figures.after_rejected}")
            print(f"    failed start -> {figures.after_failed_start}")
        if figures.after_broken_way:
            print(f"    its own part wrong -> {figures.after_broken_way}")


if __name__ == "__main__":
    main()
