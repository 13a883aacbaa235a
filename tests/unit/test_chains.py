"""Validation of certificate chains as public CAs issue them: leaf first, then each issuer, nothing stray.

Unit tests of `coretraffic.core.validate` with `PublicLikeCA` chains (root -> intermediate -> leaf, AIA), EC and
RSA keys; each bad chain is checked beside a good host that must survive.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from coretraffic.core.trust import TrustedRoots
from coretraffic.core.validate import Validation, validate_route_set
from coretraffic.testing.pki import DemoCA, KeyType, PublicLikeCA, new_key

NOW = datetime.datetime.now(datetime.UTC)
GOOD = "good.example.test"
HOST = "chain.example.test"


@pytest.fixture(scope="module", params=["ec", "rsa"])
def public_ca(request: pytest.FixtureRequest) -> PublicLikeCA:
    key_type: KeyType = request.param
    return PublicLikeCA(key_type=key_type)


def config(host: str, certificate_pem: str, private_key_pem: str) -> dict[str, Any]:
    return {
        "hostName": host,
        "destinationIps": ["10.0.0.1"],
        "destinationPorts": [8080],
        "privateKey": private_key_pem,
        "publicKey": certificate_pem,
    }


def with_good(public_ca: PublicLikeCA, *configs: dict[str, Any], roots: TrustedRoots | None = None) -> Validation:
    issued = public_ca.issue([GOOD])
    good = config(GOOD, issued.certificate_pem, issued.private_key_pem)
    validation = validate_route_set([good, *configs], NOW, roots)
    assert GOOD in [r.host for r in validation.routes]
    return validation


def pem_blocks(pem: str) -> list[str]:
    return [block + "-----END CERTIFICATE-----\n" for block in pem.split("-----END CERTIFICATE-----\n") if block]


def only_problem(validation: Validation, host: str) -> str:
    problems = [p for p in validation.problems if p.host == host]
    assert len(problems) == 1, problems
    assert problems[0].field == "publicKey"
    assert host not in [r.host for r in validation.routes]
    return problems[0].message


@pytest.mark.parametrize("leaf_key", ["ec", "rsa"])
def test_a_public_ca_chain_is_accepted_with_its_intermediate_kept_in_order(
    public_ca: PublicLikeCA, leaf_key: KeyType
) -> None:
    issued = public_ca.issue([HOST], key_type=leaf_key)
    validation = with_good(public_ca, config(HOST, issued.certificate_pem, issued.private_key_pem))
    route = next(r for r in validation.routes if r.host == HOST)
    assert validation.problems == ()
    blocks = pem_blocks(route.certificate_pem)
    assert len(blocks) == 2
    assert blocks[1] == public_ca.intermediate_pem  # what reaches Caddy: the leaf, then the intermediate
    leaf = x509.load_pem_x509_certificate(blocks[0].encode())
    assert leaf.fingerprint(hashes.SHA256()).hex() == route.certificate.sha256


def test_the_full_chain_with_its_root_at_the_end_is_accepted(public_ca: PublicLikeCA) -> None:
    issued = public_ca.issue([HOST])
    with_root = issued.certificate_pem + public_ca.certificate_pem
    validation = with_good(public_ca, config(HOST, with_root, issued.private_key_pem))
    assert validation.problems == ()
    assert len(pem_blocks(next(r for r in validation.routes if r.host == HOST).certificate_pem)) == 3


def test_a_chain_whose_leaf_is_not_first_is_rejected_saying_where_the_leaf_is(public_ca: PublicLikeCA) -> None:
    issued = public_ca.issue([HOST])
    leaf, intermediate = pem_blocks(issued.certificate_pem)
    validation = with_good(public_ca, config(HOST, intermediate + leaf, issued.private_key_pem))
    message = only_problem(validation, HOST)
    assert "#2 of 2" in message and "leaf must come first" in message


def test_a_stray_certificate_in_the_chain_is_rejected_naming_it(public_ca: PublicLikeCA) -> None:
    issued = public_ca.issue([HOST])
    stray = DemoCA("some other CA").certificate_pem
    validation = with_good(public_ca, config(HOST, issued.certificate_pem + stray, issued.private_key_pem))
    message = only_problem(validation, HOST)
    assert "#3 of 3" in message and "some other CA" in message and "is not the issuer of #2" in message


def test_an_intermediate_of_another_ca_with_the_same_name_is_a_stray(public_ca: PublicLikeCA) -> None:
    """Same subject name, different key: the key identifiers tell them apart."""
    issued = public_ca.issue([HOST])
    impostor = PublicLikeCA()  # the default name: its intermediate's subject equals public_ca's
    leaf = pem_blocks(issued.certificate_pem)[0]
    validation = with_good(public_ca, config(HOST, leaf + impostor.intermediate_pem, issued.private_key_pem))
    assert "is not the issuer of #1" in only_problem(validation, HOST)


def test_a_leaf_without_its_intermediate_is_served_with_a_warning(public_ca: PublicLikeCA) -> None:
    """Clients may fetch the intermediate (AIA) or fail: it is served as sent, and the operator is told."""
    issued = public_ca.issue([HOST])
    leaf = pem_blocks(issued.certificate_pem)[0]
    validation = with_good(public_ca, config(HOST, leaf, issued.private_key_pem), roots=roots_of(public_ca))
    assert HOST in [r.host for r in validation.routes]
    (warning,) = validation.problems
    assert (warning.host, warning.field, warning.severity) == (HOST, "publicKey", "warning")
    assert "intermediate missing?" in warning.message
    assert "coretraffic public-like CA intermediate" in warning.message  # the issuer that is missing
    assert validation.errors == ()


# --- does the chain reach a root -------------------------------------------------------------


def roots_of(*cas: DemoCA) -> TrustedRoots:
    """A trust store holding these CAs' roots, as the system's holds a public CA's."""
    return TrustedRoots.from_pem(ca.certificate_pem.encode() for ca in cas)


def chain_warnings(validation: Validation) -> list[str]:
    return [p.host for p in validation.warnings if "intermediate missing?" in p.message]


@pytest.mark.parametrize("leaf_key", ["ec", "rsa"])
def test_a_chain_ending_at_an_intermediate_whose_root_is_trusted_reaches_a_root(
    public_ca: PublicLikeCA, leaf_key: KeyType
) -> None:
    issued = public_ca.issue([HOST], key_type=leaf_key)
    validation = with_good(
        public_ca, config(HOST, issued.certificate_pem, issued.private_key_pem), roots=roots_of(public_ca)
    )
    assert validation.problems == ()


def test_a_chain_whose_root_is_not_trusted_here_is_warned_about_naming_the_root(public_ca: PublicLikeCA) -> None:
    issued = public_ca.issue([HOST])
    validation = with_good(
        public_ca, config(HOST, issued.certificate_pem, issued.private_key_pem), roots=TrustedRoots()
    )
    assert chain_warnings(validation) == [GOOD, HOST]
    assert all("coretraffic public-like CA root" in p.message for p in validation.warnings)


def test_a_chain_ending_with_its_root_needs_no_trust_store(public_ca: PublicLikeCA) -> None:
    issued = public_ca.issue([HOST])
    with_root = issued.certificate_pem + public_ca.certificate_pem
    validation = validate_route_set([config(HOST, with_root, issued.private_key_pem)], NOW, TrustedRoots())
    assert validation.problems == ()


def test_a_self_signed_certificate_reaches_a_root_of_its_own() -> None:
    """A self-signed leaf ends its own chain: clients must pin or trust it, no intermediate can be missing."""
    key = new_key("rsa")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = self_signed.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    validation = validate_route_set([config(HOST, pem, key_pem)], NOW, TrustedRoots())
    assert [r.host for r in validation.routes] == [HOST]
    assert validation.problems == ()


def test_a_private_ca_leaf_is_warned_about_unless_its_root_is_trusted_or_sent() -> None:
    """A cluster CA that signs leaves directly: fine where the system trusts it, or when the root ends the chain."""
    private = DemoCA("private cluster CA")
    issued = private.issue([HOST])
    alone = [config(HOST, issued.certificate_pem, issued.private_key_pem)]
    assert chain_warnings(validate_route_set(alone, NOW, roots_of(PublicLikeCA()))) == [HOST]
    assert validate_route_set(alone, NOW, roots_of(private)).problems == ()
    with_root = [config(HOST, issued.certificate_pem + private.certificate_pem, issued.private_key_pem)]
    assert validate_route_set(with_root, NOW, TrustedRoots()).problems == ()


def test_without_a_trust_store_the_chain_is_not_judged(public_ca: PublicLikeCA) -> None:
    """`roots=None`: what callers that do not ask (unit tests of other parts, benchmarks of the cache) get."""
    issued = public_ca.issue([HOST])
    leaf = pem_blocks(issued.certificate_pem)[0]
    assert validate_route_set([config(HOST, leaf, issued.private_key_pem)], NOW).problems == ()


def test_a_trust_store_with_an_unreadable_entry_keeps_the_others(public_ca: PublicLikeCA) -> None:
    garbage = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    roots = TrustedRoots.from_pem([garbage + public_ca.certificate_pem.encode(), b"no PEM at all"])
    assert roots.subjects == {
        x509.load_pem_x509_certificate(public_ca.certificate_pem.encode()).subject.rfc4514_string()
    }


def test_the_warning_is_judged_at_each_validation_not_cached_with_the_pair(public_ca: PublicLikeCA) -> None:
    """The pair's facts are cached by content; the trust store is not part of them."""
    issued = public_ca.issue([HOST])
    leaf = [config(HOST, pem_blocks(issued.certificate_pem)[0], issued.private_key_pem)]
    assert chain_warnings(validate_route_set(leaf, NOW, TrustedRoots())) == [HOST]
    intermediate_trusted = TrustedRoots.from_pem([public_ca.intermediate_pem.encode()])
    assert validate_route_set(leaf, NOW, intermediate_trusted).problems == ()  # the same pair, found in the cache


def test_a_key_matching_no_certificate_of_the_chain_is_a_private_key_error(public_ca: PublicLikeCA) -> None:
    issued, other = public_ca.issue([HOST]), public_ca.issue([HOST])
    validation = with_good(public_ca, config(HOST, issued.certificate_pem, other.private_key_pem))
    problems = [p for p in validation.problems if p.host == HOST]
    assert [(p.field, p.message) for p in problems] == [("privateKey", "does not match the certificate in publicKey")]
