"""Unit tests of `coretraffic.core.validate`: one test per rule, each with a good route that must survive beside it."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from coretraffic.core.validate import Problem, Validation, normalise_host_name, validate_route_set
from coretraffic.errors import FieldError, RouteSetError
from coretraffic.testing.pki import DemoCA, IssuedCertificate

NOW = datetime.datetime.now(datetime.UTC)
GOOD_HOST = "good.example.test"
CANARY = "CANARY-SECRET-9f8e"

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
_AnyKey = _PrivateKey | dsa.DSAPrivateKey


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA("coretraffic test CA")


@pytest.fixture(scope="module")
def good(ca: DemoCA) -> dict[str, Any]:
    return wire(GOOD_HOST, ca.issue([GOOD_HOST]))


def wire(host: str, issued: IssuedCertificate, **overrides: Any) -> dict[str, Any]:
    """A config in Coreflow's wire format; `overrides` use the wire names."""
    config: dict[str, Any] = {
        "hostName": host,
        "destinationIps": ["10.0.0.1"],
        "destinationPorts": [8080],
        "privateKey": issued.private_key_pem,
        "publicKey": issued.certificate_pem,
    }
    config.update(overrides)
    return config


def key_pem(key: _AnyKey, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def self_signed(key: _AnyKey, common_name: str, san: list[str] | None) -> IssuedCertificate:
    """A self-signed certificate for key types and shapes DemoCA does not make (no SAN, DSA, Ed448, ...)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    certificate = builder.sign(key, algorithm)
    return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key))


def check(*configs: Any) -> Validation:
    return validate_route_set(list(configs), NOW)


def hosts(validation: Validation) -> list[str]:
    return [route.host for route in validation.routes]


def only_error(validation: Validation, host: str, field: str, *words: str) -> Problem:
    """The single error of a set, checked for host, field and wording; the good route must have survived."""
    assert len(validation.problems) == 1, validation.problems
    problem = validation.problems[0]
    assert problem.severity == "error"
    assert (problem.host, problem.field) == (host, field)
    for word in words:
        assert word in problem.message, problem.message
    assert str(problem) == f"{host}: {field}: {problem.message}"
    assert GOOD_HOST in hosts(validation)
    return problem


# --- hostName -----------------------------------------------------------------------------------------------


def test_host_name_is_lower_cased(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("App.Example.TEST", ca.issue(["app.example.test"])), good)
    assert validation.problems == ()
    assert hosts(validation) == ["app.example.test", GOOD_HOST]


def test_leading_wildcard_host_name_is_accepted(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("*.Wild.example.test", ca.issue(["*.wild.example.test"])), good)
    assert validation.problems == ()
    assert hosts(validation) == ["*.wild.example.test", GOOD_HOST]


@pytest.mark.parametrize(
    "name",
    ["a.*.example.test", "*.*.example.test", "*example.test", "a*.example.test", "*", "example.test.*"],
)
def test_wildcard_anywhere_but_leading_is_rejected(ca: DemoCA, good: dict[str, Any], name: str) -> None:
    validation = check(wire(name, ca.issue([GOOD_HOST])), good)
    only_error(validation, name, "hostName", "labels of 1-63 letters")


@pytest.mark.parametrize(
    "name",
    [
        "-lead.example.test",
        "trail-.example.test",
        "under_score.example.test",
        "a..example.test",
        ".example.test",
        "example.test.",
        "x" * 64 + ".example.test",
    ],
)
def test_label_rules(ca: DemoCA, good: dict[str, Any], name: str) -> None:
    validation = check(wire(name, ca.issue([GOOD_HOST])), good)
    only_error(validation, name, "hostName", "labels of 1-63 letters, digits or '-'")


def test_label_of_63_characters_is_accepted() -> None:
    name = "x" * 63 + ".example.test"
    assert normalise_host_name(name) == name


def test_host_name_of_253_characters_is_accepted_254_is_not(ca: DemoCA, good: dict[str, Any]) -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == 253
    assert normalise_host_name(longest) == longest
    too_long = longest + "d"
    validation = check(wire(too_long, ca.issue([GOOD_HOST])), good)
    problem = only_error(validation, too_long[:80] + "...", "hostName", "1 to 253 characters")
    assert too_long not in str(problem)  # hostile input is not echoed at full length


def test_wildcard_counts_towards_253_characters() -> None:
    rest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 60])
    assert len(rest) == 252
    with pytest.raises(FieldError, match="1 to 253"):
        normalise_host_name("*." + rest)  # 254 in all
    assert normalise_host_name("*." + rest[:-1]) == "*." + rest[:-1]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("app.example.test:443", "app.example.test:443"),
        ("app.example.test/path", "app.example.test/path"),
        ("app .example.test", "app .example.test"),
        ("{http.request.host}.example.test", "{http.request.host}.example.test"),
        ("app.example.test\r\n", "app.example.test\\r\\n"),
        ("app\r\n.example.test", "app\\r\\n.example.test"),
        ("app.example.test\n", "app.example.test\\n"),
        ("", "#1"),  # configs are numbered from 1
    ],
)
def test_host_name_with_port_path_space_braces_or_newline_is_rejected(
    ca: DemoCA, good: dict[str, Any], name: str, shown: str
) -> None:
    validation = check(wire(name, ca.issue([GOOD_HOST])), good)
    only_error(validation, shown, "hostName", "must be a DNS name")


def test_label_with_trailing_newline_is_not_accepted_under_a_wildcard_certificate(
    ca: DemoCA, good: dict[str, Any]
) -> None:
    # With the bug, a wildcard certificate "covers" the newline label and the route reaches Caddy's host matcher.
    validation = check(wire("app\n.example.test", ca.issue(["*.example.test"])), good)
    only_error(validation, "app\\n.example.test", "hostName", "must be a DNS name")


def test_upstream_dns_name_with_trailing_newline_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationIps=["backend\n"]), good)
    only_error(validation, "app.example.test", "destinationIps[0]", "IPv4/IPv6 address or a DNS name")


@pytest.mark.parametrize("name", ["10.0.0.1", "::1", "2001:db8::1"])
def test_ip_address_host_name_is_rejected(ca: DemoCA, good: dict[str, Any], name: str) -> None:
    validation = check(wire(name, ca.issue([GOOD_HOST])), good)
    only_error(validation, name, "hostName", "is an IP address", "DNS name")


def test_bracketed_ipv6_host_name_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("[::1]", ca.issue([GOOD_HOST])), good)
    only_error(validation, "[::1]", "hostName", "must be a DNS name")


def test_unicode_host_name_becomes_punycode(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(
        wire("Bücher.example.test", ca.issue(["xn--bcher-kva.example.test"])),
        wire("*.bücher.example.test", ca.issue(["*.xn--bcher-kva.example.test"])),
        good,
    )
    assert validation.problems == ()
    assert hosts(validation) == ["xn--bcher-kva.example.test", "*.xn--bcher-kva.example.test", GOOD_HOST]


def test_invalid_internationalised_name_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("☃.example.test", ca.issue([GOOD_HOST])), good)
    only_error(validation, "\\u2603.example.test", "hostName", "not a valid internationalised domain name")


def test_host_name_of_wrong_type_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire(GOOD_HOST, ca.issue([GOOD_HOST]), hostName=["a.example.test"]), good)
    only_error(validation, "#1", "hostName", "valid string")


# --- destinationIps / destinationPorts / upstreams ------------------------------------------------------------


def test_empty_destination_ips_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationIps=[]), good)
    only_error(validation, "app.example.test", "destinationIps", "at least one address")


@pytest.mark.parametrize("entry", ["10.0.0.1:80", "not an ip", "", "*.internal", "10.0.0.256/24", "[10.0.0.1"])
def test_bad_destination_ip_names_its_index(ca: DemoCA, good: dict[str, Any], entry: str) -> None:
    validation = check(
        wire("app.example.test", ca.issue(["app.example.test"]), destinationIps=["10.0.0.1", entry]), good
    )
    only_error(validation, "app.example.test", "destinationIps[1]", "IPv4/IPv6 address or a DNS name")


def test_destination_ip_of_wrong_type_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationIps=[10]), good)
    only_error(validation, "app.example.test", "destinationIps[0]", "valid string")


def test_ipv6_upstreams_are_bracketed(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(
        wire(
            "app.example.test",
            ca.issue(["app.example.test"]),
            destinationIps=["::1", "[2001:DB8::0:1]", "fe80::1"],
            destinationPorts=[443],
        ),
        good,
    )
    assert validation.problems == ()
    assert validation.routes[0].upstreams == ("[2001:db8::1]:443", "[::1]:443", "[fe80::1]:443")


def test_dns_name_upstreams_are_accepted_and_normalised(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(
        wire(
            "app.example.test",
            ca.issue(["app.example.test"]),
            destinationIps=["Backend.Internal", "api", "bücher.internal"],
            destinationPorts=[80],
        ),
        good,
    )
    assert validation.problems == ()
    assert validation.routes[0].upstreams == ("api:80", "backend.internal:80", "xn--bcher-kva.internal:80")


def test_empty_destination_ports_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationPorts=[]), good)
    only_error(validation, "app.example.test", "destinationPorts", "at least one port")


@pytest.mark.parametrize(("ports", "index", "port"), [([0], 0, 0), ([80, 65536], 1, 65536), ([443, -1], 1, -1)])
def test_out_of_range_port_is_rejected(
    ca: DemoCA, good: dict[str, Any], ports: list[int], index: int, port: int
) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationPorts=ports), good)
    only_error(validation, "app.example.test", f"destinationPorts[{index}]", f"{port} is not a port (1-65535)")


def test_ports_1_and_65535_are_accepted(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationPorts=[1, 65535]), good)
    assert validation.problems == ()
    assert validation.routes[0].upstreams == ("10.0.0.1:1", "10.0.0.1:65535")


@pytest.mark.parametrize("port", [True, "8080", 8080.0, None])
def test_port_of_wrong_type_is_rejected_by_strict_typing(ca: DemoCA, good: dict[str, Any], port: Any) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationPorts=[port]), good)
    only_error(validation, "app.example.test", "destinationPorts[0]", "valid integer")


def test_upstreams_are_every_ip_times_every_port_deduplicated_and_sorted(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(
        wire(
            "app.example.test",
            ca.issue(["app.example.test"]),
            destinationIps=["10.0.0.2", "::1", "10.0.0.1", "10.0.0.2", "[::1]"],
            destinationPorts=[8080, 80, 8080],
        ),
        good,
    )
    assert validation.problems == ()
    # Sorted: the same upstreams given in another order are the same set (and render the same, no reload).
    assert validation.routes[0].upstreams == (
        "10.0.0.1:80",
        "10.0.0.1:8080",
        "10.0.0.2:80",
        "10.0.0.2:8080",
        "[::1]:80",
        "[::1]:8080",
    )


# --- PEMs -----------------------------------------------------------------------------------------------------


def test_garbage_certificate_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    issued = ca.issue(["app.example.test"])
    garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    for certificate in (garbage, "", "hello"):
        validation = check(wire("app.example.test", issued, publicKey=certificate), good)
        only_error(validation, "app.example.test", "publicKey", "is not a PEM certificate")


def test_garbage_key_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    issued = ca.issue(["app.example.test"])
    garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    for key in (garbage, "", issued.certificate_pem):
        validation = check(wire("app.example.test", issued, privateKey=key), good)
        only_error(validation, "app.example.test", "privateKey", "is not a PEM private key")


def test_encrypted_key_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    issued = ca.issue(["app.example.test"])
    key = serialization.load_pem_private_key(issued.private_key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    validation = check(wire("app.example.test", issued, privateKey=key_pem(key, b"passphrase")), good)
    only_error(validation, "app.example.test", "privateKey", "is encrypted", "without a passphrase")


def test_key_not_matching_certificate_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    issued, other = ca.issue(["app.example.test"]), ca.issue(["app.example.test"])
    validation = check(wire("app.example.test", issued, privateKey=other.private_key_pem), good)
    only_error(validation, "app.example.test", "privateKey", "does not match the certificate")


@pytest.mark.parametrize(
    "make_key",
    [lambda: dsa.generate_private_key(2048), ed448.Ed448PrivateKey.generate],
    ids=["dsa", "ed448"],
)
def test_key_types_caddy_cannot_serve_are_rejected(ca: DemoCA, good: dict[str, Any], make_key: Any) -> None:
    issued = self_signed(make_key(), "app.example.test", ["app.example.test"])
    validation = check(wire("app.example.test", issued), good)
    only_error(validation, "app.example.test", "privateKey", "not a key type Caddy can serve")


@pytest.mark.parametrize(
    "make_key",
    [lambda: rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate],
    ids=["rsa", "ed25519"],
)
def test_rsa_and_ed25519_keys_are_accepted(good: dict[str, Any], make_key: Any) -> None:
    validation = check(
        wire("app.example.test", self_signed(make_key(), "app.example.test", ["app.example.test"])), good
    )
    assert validation.problems == ()
    assert hosts(validation) == ["app.example.test", GOOD_HOST]


def test_certificate_chain_uses_the_leaf(ca: DemoCA, good: dict[str, Any]) -> None:
    issued = ca.issue(["app.example.test"])
    chain = IssuedCertificate(issued.certificate_pem + ca.certificate_pem, issued.private_key_pem)
    validation = check(wire("app.example.test", chain), good)
    assert validation.problems == ()
    assert validation.routes[0].certificate.names == ("app.example.test",)


# --- SAN coverage ---------------------------------------------------------------------------------------------


def test_exact_san_covers_host(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["other.example.test", "APP.example.test"])), good)
    assert validation.problems == ()
    assert validation.routes[0].certificate.names == ("other.example.test", "APP.example.test")


def test_certificate_for_another_name_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["other.example.test"])), good)
    only_error(validation, "app.example.test", "publicKey", "does not cover app.example.test", "other.example.test")


def test_wildcard_san_covers_exactly_one_label(ca: DemoCA, good: dict[str, Any]) -> None:
    wildcard = ca.issue(["*.example.test"])
    validation = check(
        wire("one.example.test", wildcard),
        wire("two.levels.example.test", wildcard),
        wire("example.test", wildcard),
        good,
    )
    assert hosts(validation) == ["one.example.test", GOOD_HOST]
    assert [(p.host, p.field) for p in validation.problems] == [
        ("two.levels.example.test", "publicKey"),
        ("example.test", "publicKey"),
    ]
    assert all("does not cover" in p.message and "*.example.test" in p.message for p in validation.problems)


def test_wildcard_host_name_needs_a_wildcard_san(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(
        wire("*.example.test", ca.issue(["a.example.test", "example.test"])),
        wire("*.ok.example.test", ca.issue(["*.ok.example.test"])),
        good,
    )
    assert hosts(validation) == ["*.ok.example.test", GOOD_HOST]
    assert [(p.host, p.field) for p in validation.problems] == [("*.example.test", "publicKey")]
    assert "does not cover *.example.test" in validation.problems[0].message


def test_common_name_is_used_without_san(good: dict[str, Any]) -> None:
    issued = self_signed(ec.generate_private_key(ec.SECP256R1()), "app.example.test", san=None)
    validation = check(wire("app.example.test", issued), good)
    assert validation.problems == ()
    assert validation.routes[0].certificate.names == ("app.example.test",)


def test_common_name_is_ignored_when_san_is_present(good: dict[str, Any]) -> None:
    issued = self_signed(ec.generate_private_key(ec.SECP256R1()), "app.example.test", san=["other.example.test"])
    validation = check(wire("app.example.test", issued), good)
    only_error(validation, "app.example.test", "publicKey", "does not cover app.example.test")


# --- validity period ------------------------------------------------------------------------------------------


def test_expired_certificate_warns_but_keeps_the_route(ca: DemoCA, good: dict[str, Any]) -> None:
    expired = ca.issue(
        ["app.example.test"],
        not_before=NOW - datetime.timedelta(days=30),
        not_after=NOW - datetime.timedelta(days=1),
    )
    validation = check(wire("app.example.test", expired), good)
    assert hosts(validation) == ["app.example.test", GOOD_HOST]
    assert validation.errors == ()
    (warning,) = validation.warnings
    assert (warning.host, warning.field, warning.severity) == ("app.example.test", "publicKey", "warning")
    assert "expired" in warning.message


def test_not_yet_valid_certificate_warns_but_keeps_the_route(ca: DemoCA, good: dict[str, Any]) -> None:
    future = ca.issue(
        ["app.example.test"],
        not_before=NOW + datetime.timedelta(days=1),
        not_after=NOW + datetime.timedelta(days=30),
    )
    validation = check(wire("app.example.test", future), good)
    assert hosts(validation) == ["app.example.test", GOOD_HOST]
    assert validation.errors == ()
    (warning,) = validation.warnings
    assert (warning.host, warning.field) == ("app.example.test", "publicKey")
    assert "not valid before" in warning.message


# --- authentication -------------------------------------------------------------------------------------------


def _with_auth(ca: DemoCA, **auth: Any) -> dict[str, Any]:
    authentication = {"type": "Basic", "user": "alice", "pass": "wonderland", **auth}
    return wire("app.example.test", ca.issue(["app.example.test"]), authentication=authentication)


def test_basic_auth_is_kept_and_its_password_hidden(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(_with_auth(ca, **{"pass": "wonder-" + CANARY}), good)
    assert validation.problems == ()
    auth = validation.routes[0].basic_auth
    assert auth is not None
    assert (auth.user, auth.password) == ("alice", "wonder-" + CANARY)
    assert CANARY not in repr(auth)
    assert validation.routes[1].basic_auth is None


def test_authentication_type_other_than_basic_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(_with_auth(ca, type="Digest"), good)
    only_error(validation, "app.example.test", "authentication.type", "'Basic'")


def test_empty_user_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(_with_auth(ca, user=""), good)
    only_error(validation, "app.example.test", "authentication.user", "must not be empty")


@pytest.mark.parametrize("user", ["al:ice", "al{ice}", "al\nice"])
def test_user_with_colon_braces_or_control_characters_is_rejected(ca: DemoCA, good: dict[str, Any], user: str) -> None:
    validation = check(_with_auth(ca, user=user), good)
    only_error(validation, "app.example.test", "authentication.user", "without ':'")


def test_empty_password_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(_with_auth(ca, **{"pass": ""}), good)
    only_error(validation, "app.example.test", "authentication.pass", "must not be empty")


def test_password_longer_than_72_bytes_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    assert check(_with_auth(ca, **{"pass": "p" * 72}), good).problems == ()
    for password in ("p" * 73, "é" * 37):  # 37 characters, 74 bytes in UTF-8: the limit is on bytes
        validation = check(_with_auth(ca, **{"pass": password}), good)
        only_error(validation, "app.example.test", "authentication.pass", "longer than 72 bytes")


def test_missing_password_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    config = _with_auth(ca)
    del config["authentication"]["pass"]
    only_error(check(config, good), "app.example.test", "authentication.pass", "Field required")


def test_null_authentication_means_none(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), authentication=None), good)
    assert validation.problems == ()
    assert validation.routes[0].basic_auth is None


# --- the set as a whole ---------------------------------------------------------------------------------------


def test_duplicate_host_name_keeps_the_first(ca: DemoCA, good: dict[str, Any]) -> None:
    first = wire("app.example.test", ca.issue(["app.example.test"]), destinationIps=["10.0.0.1"])
    second = wire("APP.example.test", ca.issue(["app.example.test"]), destinationIps=["10.0.0.2"])
    validation = check(first, good, second)
    assert hosts(validation) == ["app.example.test", GOOD_HOST]
    assert validation.routes[0].upstreams == ("10.0.0.1:8080",)
    # The host is served (by the first config): the second is ignored, a warning, not a rejected host.
    assert validation.errors == ()
    (problem,) = validation.problems
    assert (problem.host, problem.field, problem.severity) == ("app.example.test", "hostName", "warning")
    assert problem.message == "config #3 ignored (duplicate of #1, which is served)"


def test_duplicate_of_a_rejected_config_is_not_a_duplicate(ca: DemoCA, good: dict[str, Any]) -> None:
    broken = wire("app.example.test", ca.issue(["app.example.test"]), destinationPorts=[0])
    fine = wire("app.example.test", ca.issue(["app.example.test"]))
    validation = check(broken, fine, good)
    assert hosts(validation) == ["app.example.test", GOOD_HOST]
    only_error(validation, "app.example.test", "destinationPorts[0]", "is not a port")


def test_unknown_extra_fields_are_ignored_and_noticed(ca: DemoCA, good: dict[str, Any]) -> None:
    config = wire("app.example.test", ca.issue(["app.example.test"]), futureField={"x": 1}, priority=3)
    config_with_auth = _with_auth(ca)
    config_with_auth["hostName"] = "auth.example.test"
    config_with_auth["publicKey"], config_with_auth["privateKey"] = (
        (issued := ca.issue(["auth.example.test"])).certificate_pem,
        issued.private_key_pem,
    )
    config_with_auth["authentication"]["realm"] = "future"
    validation = check(config, config_with_auth, good)
    assert validation.errors == validation.warnings == ()
    assert [(n.host, n.field) for n in validation.notices] == [
        ("app.example.test", "futureField"),
        ("app.example.test", "priority"),
        ("auth.example.test", "authentication.realm"),
    ]
    assert hosts(validation) == ["app.example.test", "auth.example.test", GOOD_HOST]


@pytest.mark.parametrize("item", [5, "app.example.test", None, ["hostName"]])
def test_non_dict_item_is_a_problem_named_by_position(good: dict[str, Any], item: Any) -> None:
    validation = check(good, item)
    only_error(validation, "#2", "config", "valid dictionary")


def test_missing_fields_are_each_named(good: dict[str, Any]) -> None:
    validation = check({}, good)
    assert hosts(validation) == [GOOD_HOST]
    assert [(p.host, p.field, p.message) for p in validation.problems] == [
        ("#1", field, "Field required")
        for field in ("hostName", "destinationIps", "destinationPorts", "privateKey", "publicKey")
    ]


def test_missing_field_names_the_host(ca: DemoCA, good: dict[str, Any]) -> None:
    config = wire("app.example.test", ca.issue(["app.example.test"]))
    del config["publicKey"]
    only_error(check(config, good), "app.example.test", "publicKey", "Field required")


def test_reverse_configs_object_is_accepted(good: dict[str, Any]) -> None:
    validation = validate_route_set({"reverseConfigs": [good], "other": 1}, NOW)
    assert hosts(validation) == [GOOD_HOST]
    assert validate_route_set({"reverseConfigs": []}, NOW) == Validation((), ())


@pytest.mark.parametrize(
    "document", ["[]", 5, None, {"routes": []}, {"reverseConfigs": {"hostName": "a"}}, {"reverseConfigs": None}]
)
def test_document_neither_list_nor_reverse_configs_is_a_route_set_error(document: Any) -> None:
    with pytest.raises(RouteSetError, match="reverseConfigs"):
        validate_route_set(document, NOW)


def test_good_routes_keep_their_input_order(ca: DemoCA) -> None:
    names = ["c.example.test", "a.example.test", "b.example.test"]
    validation = check(*(wire(n, ca.issue([n])) for n in names))
    assert hosts(validation) == names


# --- secrets --------------------------------------------------------------------------------------------------


def _canary_configs(ca: DemoCA) -> Iterator[Any]:
    """Broken configs of every kind whose privateKey or password carries the canary."""
    issued = ca.issue(["app.example.test"])
    canary_key = f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"
    real_key = serialization.load_pem_private_key(issued.private_key_pem.encode(), password=None)
    assert isinstance(real_key, ec.EllipticCurvePrivateKey)
    encrypted = key_pem(real_key, CANARY.encode()).replace("-----END", f"{CANARY}\n-----END")
    auth = {"type": "Basic", "user": "alice", "pass": CANARY}
    yield wire("k1.example.test", issued, privateKey=canary_key)
    yield wire("k2.example.test", issued, privateKey=CANARY)
    yield wire("k3.example.test", issued, privateKey=[CANARY])
    yield wire("k4.example.test", issued, privateKey={"pem": CANARY})
    yield wire("k5.example.test", issued, privateKey=encrypted)
    yield wire("k6.example.test", issued, privateKey=issued.private_key_pem + CANARY)
    yield wire("k7.example.test", issued, publicKey=CANARY, privateKey=CANARY)
    yield wire("app.example.test", issued, privateKey=ca.issue(["x.example.test"]).private_key_pem + CANARY)
    yield wire("p1.example.test", issued, authentication={**auth, "pass": CANARY * 5})
    yield wire("p2.example.test", issued, authentication={**auth, "pass": [CANARY]})
    yield wire("p3.example.test", issued, authentication={**auth, "pass": 7, "type": CANARY})
    yield wire("app.example.test", issued, authentication={**auth, "user": ""})
    yield wire("app.example.test", issued, authentication={**auth, "user": "a:b"})
    yield wire("app.example.test", issued, authentication=auth, destinationPorts=[0])
    yield wire("app.example.test", issued, authentication=CANARY)
    yield {"privateKey": CANARY, "authentication": auth}
    yield wire("app.example.test", issued, authentication=auth)  # valid: kept, and its repr must hide the pass
    yield wire("app.example.test", issued, authentication=auth)  # duplicate


def test_secrets_never_appear_in_problems_or_reprs(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(*_canary_configs(ca), good)
    assert len(validation.problems) >= 17
    assert hosts(validation) == ["app.example.test", GOOD_HOST]
    for problem in validation.problems:
        assert CANARY not in str(problem)
        assert CANARY not in repr(problem)
    assert CANARY not in repr(validation)
    for route in validation.routes:
        assert CANARY not in repr(route)
    # the secret is really in there, so the assertions above are not vacuous
    assert validation.routes[0].basic_auth is not None
    assert validation.routes[0].basic_auth.password == CANARY


@pytest.mark.parametrize("name", ["999.1.1.1", "app.example.123", "1.2.3.4.5"])
def test_a_name_ending_in_an_all_numeric_label_is_rejected(ca: DemoCA, good: dict[str, Any], name: str) -> None:
    validation = check(wire(name, ca.issue([GOOD_HOST])), good)
    only_error(validation, name, "hostName", "all-numeric label")


def test_an_upstream_name_ending_in_an_all_numeric_label_is_rejected(ca: DemoCA, good: dict[str, Any]) -> None:
    validation = check(wire("app.example.test", ca.issue(["app.example.test"]), destinationIps=["999.1.1.1"]), good)
    only_error(validation, "app.example.test", "destinationIps[0]", "IPv4/IPv6 address or a DNS name")


# -- results kept from one route set to the next ----------------------------------------------------------------


def test_every_host_of_a_set_larger_than_any_fixed_cache_is_found_again_in_the_next(ca: DemoCA) -> None:
    # One wildcard certificate for 17,000 names: distinct configs (the cache is by content) that cost no key
    # generation. A fixed-size LRU of fewer entries than the set would miss every one of them on the second pass.
    issued = ca.issue(["*.many.example.test"])
    configs = [wire(f"h{i:05}.many.example.test", issued) for i in range(17_000)]
    first = validate_route_set(configs, NOW)
    again = validate_route_set([dict(config) for config in configs], NOW)
    assert len(first.routes) == len(again.routes) == 17_000
    assert all(a is b for a, b in zip(first.routes, again.routes, strict=True))


def test_a_host_the_next_set_leaves_out_is_let_go(ca: DemoCA) -> None:
    left = wire("left.example.test", ca.issue(["left.example.test"]))
    stays = wire("stays.example.test", ca.issue(["stays.example.test"]))
    [kept_left, kept_stays] = check(left, stays).routes
    assert check(stays).routes == (kept_stays,)
    [left_again, stays_again] = check(left, stays).routes
    assert left_again == kept_left and left_again is not kept_left  # validated anew
    assert stays_again is kept_stays
