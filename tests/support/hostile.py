"""Hostile route sets for the property tests: wrong JSON types, missing fields, huge strings, duplicate hosts,
unicode and punycode names, Caddy placeholders and CR/LF wherever a string goes, garbage and mismatched PEMs.

Each field of a generated config is well-formed most of the time (so plenty of configs are accepted and reach
Caddy) and hostile otherwise. Every private key and password carries the canary, so a leak of either is found.
The certificates come from one CA made at import; the same PEMs recur, as they do in Coreflow's updates.
"""

from __future__ import annotations

import datetime
import string
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from coretraffic.core.validate import Problem, Validation
from coretraffic.testing.pki import DemoCA
from tests.support.canary import CANARY, Canary

NOW = datetime.datetime.now(datetime.UTC)
WIRE_FIELDS = ("hostName", "destinationIps", "destinationPorts", "privateKey", "publicKey", "authentication", "config")
FORBIDDEN = frozenset("{}\r\n")
POOL_CA = DemoCA("coretraffic reliability CA")
POOL_CANARY = Canary()  # remembers the pool's PEM bodies; tests add them to their own canary


@dataclass(frozen=True)
class Pair:
    names: tuple[str, ...]
    certificate: str
    key: str  # with the canary line in front of the PEM block


def _pair(*names: str) -> Pair:
    issued = POOL_CA.issue(names)
    POOL_CANARY.certificate(issued.certificate_pem)
    return Pair(names, issued.certificate_pem, POOL_CANARY.key(issued.private_key_pem))


POOL = (
    _pair("a.example.test"),
    _pair("b.example.test", "c.example.test"),
    _pair("xn--bcher-kva.example.test"),  # bücher.example.test
    _pair("*.wild.example.test"),
)
MANY = _pair("*.many.example.test")  # one pair for the 10,000-route set

HOSTILE_STRINGS = (
    "",
    " ",
    "\t",
    "{env.HOME}",
    "{http.request.uri}",
    "{http.request.header.X}",
    "a\r\nb",
    "a\nb",
    "\r",
    "a b",
    "x{",
    "}",
    "\x00",
    "\u202e",
    "ä",
    "xn--",
    "xn--zz",
    ".",
    "..",
    "-a.example.test",
    "a..example.test",
    "*",
    "*.",
    "*.*.example.test",
    "127.0.0.1",
    "::1",
    "[::1]",
    "localhost",
    "a.example.test:443",
    "a.example.test/path",
    "A.EXAMPLE.TEST",
    "a.example.test.",
    "\uff21\uff22\uff23.example.test",  # fullwidth ABC: UTS 46 maps it to abc
    "bücher.example.test",
    "日本.example.test",
    "xn--bcher-kva.example.test",
    "a" * 64 + ".example.test",
    ".".join(["a" * 63] * 5),
    "{env.HOME}.example.test",
    "a.example.test\r\nHost: evil",
    "a.example.test{http.request.uri}",
    "-----BEGIN CERTIFICATE-----",
)

HUGE = st.sampled_from((10_000, 300_000, 1_000_000)).map(lambda n: "a" * n)
wrong_type: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
hostile_string: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(HOSTILE_STRINGS), st.text(max_size=30), HUGE, st.text(alphabet=string.printable, max_size=30)
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten: with five fields a config, about half the configs are accepted."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


def _host_variants(pair: Pair) -> st.SearchStrategy[str]:
    names = [n for name in pair.names for n in (name, name.upper(), name + ".")]
    names += [n.replace("*", "x") for n in pair.names if n.startswith("*.")]
    names += ["bücher.example.test" for n in pair.names if n.startswith("xn--bcher")]
    return st.sampled_from(names)


def _garbage_pem(label: str, canary: bool) -> st.SearchStrategy[str]:
    body = st.one_of(
        st.text(alphabet=string.ascii_letters + string.digits + "+/=", max_size=200),
        st.binary(max_size=120).map(lambda b: b.hex()),
        hostile_string,
    )
    prefix = f"{CANARY}-garbage\n" if canary else ""
    return body.map(lambda text: f"{prefix}-----BEGIN {label}-----\n{text}\n-----END {label}-----\n")


def _certificate_for(pair: Pair) -> st.SearchStrategy[Any]:
    others = [p.certificate for p in POOL if p is not pair]
    return mostly(
        st.just(pair.certificate),
        st.one_of(
            st.sampled_from(others),  # a certificate for other names
            _garbage_pem("CERTIFICATE", canary=False),
            st.just(pair.certificate[: len(pair.certificate) // 2]),  # truncated
            st.just(pair.certificate.replace("A", "B", 3)),  # corrupted
            hostile_string,
            wrong_type,
        ),
    )


def _key_for(pair: Pair) -> st.SearchStrategy[Any]:
    others = [p.key for p in POOL if p is not pair]
    return mostly(
        st.just(pair.key),
        st.one_of(
            st.sampled_from(others),  # a key that does not match the certificate
            _garbage_pem("PRIVATE KEY", canary=True),
            _garbage_pem("EC PRIVATE KEY", canary=True),
            st.just(pair.key[: len(pair.key) // 2]),
            hostile_string.map(lambda text: f"{CANARY}-{text}"),
            wrong_type,
        ),
    )


ips: st.SearchStrategy[Any] = mostly(
    st.lists(
        st.sampled_from(["127.0.0.1", "::1", "[::1]", "10.0.0.7", "2001:db8::1", "upstream.internal"]),
        min_size=1,
        max_size=3,
    ),
    st.one_of(st.lists(hostile_string, max_size=3), st.lists(wrong_type, min_size=1, max_size=2), wrong_type),
)
ports: st.SearchStrategy[Any] = mostly(
    st.lists(st.integers(1, 65535), min_size=1, max_size=3),
    st.one_of(
        st.lists(
            st.one_of(st.integers(-(10**12), 10**12), st.booleans(), st.text(max_size=5), st.floats()), max_size=3
        ),
        wrong_type,
    ),
)
users: st.SearchStrategy[Any] = mostly(st.sampled_from(["alice", "bob", "Ümit", "o'brien"]), st.one_of(hostile_string))
passwords: st.SearchStrategy[Any] = mostly(
    st.text(min_size=1, max_size=20).map(lambda text: f"{CANARY}-{text}"),
    st.one_of(hostile_string.map(lambda text: f"{CANARY}-{text}"), st.just(""), wrong_type),
)
authentications: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries({"type": st.just("Basic"), "user": users, "pass": passwords}),
    st.fixed_dictionaries({"type": st.sampled_from(["Digest", "basic", ""]), "user": users, "pass": passwords}),
    st.fixed_dictionaries({"type": st.just("Basic")}, optional={"user": users, "pass": passwords}),
    wrong_type,
)


@st.composite
def configs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(wrong_type)  # not even an object
    pair = draw(st.sampled_from(POOL))
    config: dict[str, Any] = {
        "hostName": draw(mostly(_host_variants(pair), st.one_of(hostile_string, wrong_type))),
        "destinationIps": draw(ips),
        "destinationPorts": draw(ports),
        "privateKey": draw(_key_for(pair)),
        "publicKey": draw(_certificate_for(pair)),
    }
    if draw(st.integers(0, 3)) == 0:
        config["authentication"] = draw(authentications)
    if draw(st.integers(0, 9)) == 0:
        for name in draw(st.sets(st.sampled_from(sorted(config)), min_size=1, max_size=2)):
            del config[name]
    if draw(st.integers(0, 9)) == 0:
        config["futureField"] = draw(wrong_type)  # Coreflow may add fields: ignored, never a rejection
    return config


config_lists = st.lists(configs(), max_size=8).flatmap(
    # Now and then the same configs twice: duplicate hosts, the first one kept.
    lambda items: st.sampled_from([items, items + items[:2]])
)
documents: st.SearchStrategy[Any] = st.one_of(
    config_lists,
    config_lists.map(lambda items: {"reverseConfigs": items}),
    wrong_type,  # not a route set at all
    st.text(max_size=10),
    st.fixed_dictionaries({"reverseConfigs": wrong_type}),
    st.fixed_dictionaries({"routes": config_lists}),
)


def items_of(document: Any) -> list[Any] | None:
    """The configs of a usable route set, None for a document that is not one."""
    if isinstance(document, dict):
        document = document.get("reverseConfigs")
    return document if isinstance(document, list) else None


def assert_sound(items: list[Any], validation: Validation) -> None:
    """The properties every validation must have, whatever came in."""
    for problem in validation.problems:
        assert_names_host_and_field(problem)
    for route in validation.routes:
        assert route.host.isascii() and route.host == route.host.lower(), route.host
        assert_clean(route.host, "host")
        for upstream in route.upstreams:
            assert_clean(upstream, "upstream")
        if route.basic_auth is not None:
            user = route.basic_auth.user
            assert user.isprintable() and not FORBIDDEN & set(user), f"user {user!r}"
    hosts = [route.host for route in validation.routes]
    assert len(hosts) == len(set(hosts)), "a host accepted twice"
    assert len(hosts) <= len(items)
    # Every config left out is named: by at least one error, or as an ignored duplicate of a served host.
    ignored = [p for p in validation.warnings if p.field == "hostName" and "ignored (duplicate of #" in p.message]
    assert all(p.host in hosts for p in ignored), "a duplicate of a host that is not served"
    assert len(validation.errors) + len(ignored) >= len(items) - len(hosts)


def assert_clean(value: str, what: str) -> None:
    assert not FORBIDDEN & set(value) and not any(c.isspace() for c in value), f"{what} {value[:100]!r}"


def assert_names_host_and_field(problem: Problem) -> None:
    assert problem.host and problem.host.isprintable() and len(problem.host) <= 83, f"host label {problem.host!r}"
    if problem.message.startswith("is not a wire field"):  # a field the config has that the wire format lacks
        assert problem.field.isprintable() and len(problem.field) <= 60, f"field {problem.field!r}"
    else:
        assert problem.field and problem.field.split(".")[0].split("[")[0] in WIRE_FIELDS, f"field {problem.field!r}"
    assert problem.message, str(problem)
