"""A load of CA-issued certificates whose OCSP responder never answers, against a load of self-signed ones of the
same count, alternated in one run: with stapling off (the default), no load waits for a responder.

The CA-issued set is `PublicLikeCA`'s (leaf + intermediate, AIA naming a local responder that holds every
connection), the self-signed set a `DemoCA`'s; both have EC and RSA leaves in turn. Each round loads one set,
then the other, both new to Caddy; the medians of the two load times are compared, and the responder's
connections are counted (0 expected). A third set, the self-signed one with the CA's intermediate appended to
each certificate entry (Caddy does not verify chains), shows how much of the difference is the chain's bytes.
"""

from __future__ import annotations

import datetime
import statistics
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
    with_intermediate_s: float  # the self-signed set with the intermediate appended to each entry
    responder_connections: int

    @property
    def ratio(self) -> float:
        return self.ca_issued_s / self.self_signed_s


async def measure(bed: Bed, size: int, rounds: int) -> Row:
    async with Responder(answer=False) as responder:
        ca = responder.issuing_ca()
        rsa_key = new_key("rsa")  # one RSA key for every RSA leaf: generating one takes tens of milliseconds
        issuers: dict[str, DemoCA] = {"ca": ca, "self": DemoCA()}
        timings: dict[str, list[float]] = {"ca": [], "self": [], "padded": []}
        for round_ in range(rounds):
            bodies = {}
            for kind in timings:
                issuer = issuers.get(kind, issuers["self"])
                configs = [
                    demo_route(issuer, host, bed.upstream_port, key=rsa_key if i % 2 else None)
                    for i, host in enumerate(hosts(size, f"{kind}{round_}-"))
                ]
                config = bed.render(validate_route_set(configs, datetime.datetime.now(datetime.UTC)).routes)
                if kind == "padded":
                    for entry in config["apps"]["tls"]["certificates"]["load_pem"]:
                        entry["certificate"] += ca.intermediate_pem
                bodies[kind] = serialise(config)
            for kind, seconds in (await bed.timed_loads(bodies)).items():
                timings[kind] += seconds
        medians = {kind: statistics.median(t) for kind, t in timings.items()}
        return Row(size, medians["ca"], medians["self"], medians["padded"], responder.connections)
