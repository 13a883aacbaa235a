"""A load of CA-issued certificates whose OCSP responder never answers, against a load of self-signed ones of the
same count, alternated in one run: with stapling off (the default), no load waits for a responder.

The CA-issued set is `PublicLikeCA`'s (leaf + intermediate, AIA naming a local responder that holds every
connection), the self-signed set a `DemoCA`'s; both have EC and RSA leaves in turn. Each round loads one set,
then the other, both new to Caddy; the medians of the two load times are compared, and the responder's
connections are counted (0 expected).
"""

from __future__ import annotations

import datetime
import statistics
import time
from dataclasses import dataclass

from benchmarks.harness import Bed, hosts
from coretraffic.caddyjson.render import serialise
from coretraffic.core.validate import validate_route_set
from coretraffic.testing.ocsp import Responder
from coretraffic.testing.pki import DemoCA, demo_route, new_key


@dataclass(frozen=True)
class Row:
    certificates: int
    ca_issued_s: float
    self_signed_s: float
    responder_connections: int

    @property
    def ratio(self) -> float:
        return self.ca_issued_s / self.self_signed_s


async def measure(bed: Bed, size: int, rounds: int) -> Row:
    async with Responder(answer=False) as responder:
        ca = responder.issuing_ca()
        rsa_key = new_key("rsa")  # one RSA key for every RSA leaf: generating one takes tens of milliseconds
        issuers: dict[str, DemoCA] = {"ca": ca, "self": DemoCA()}
        timings: dict[str, list[float]] = {"ca": [], "self": []}
        for round_ in range(rounds):
            names = {kind: hosts(size, f"{kind}{round_}-") for kind in timings}
            configs = {
                kind: [
                    demo_route(issuer, host, bed.upstream_port, key=rsa_key if i % 2 else None)
                    for i, host in enumerate(names[kind])
                ]
                for kind, issuer in issuers.items()
            }
            for kind in timings:
                routes = validate_route_set(configs[kind], datetime.datetime.now(datetime.UTC)).routes
                body = serialise(bed.render(routes))
                started = time.perf_counter()
                await bed.admin.load(body)
                timings[kind].append(time.perf_counter() - started)
        return Row(size, statistics.median(timings["ca"]), statistics.median(timings["self"]), responder.connections)
