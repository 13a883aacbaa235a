"""Validation of certificate chains as public CAs issue them: leaf first, then each issuer, nothing stray.

Unit tests of `coretraffic.core.validate` with `PublicLikeCA` chains (root -> intermediate -> leaf, AIA), EC and
RSA keys; each bad chain is checked beside a good host that must survive.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from coretraffic.core.validate import Validation, validate_route_set
from coretraffic.testing.pki import DemoCA, KeyType, PublicLikeCA

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


def with_good(public_ca: PublicLikeCA, *configs: dict[str, Any]) -> Validation:
    issued = public_ca.issue([GOOD])
    validation = validate_route_set([config(GOOD, issued.certificate_pem, issued.private_key_pem), *configs], NOW)
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


def test_a_leaf_without_its_intermediate_is_still_accepted(public_ca: PublicLikeCA) -> None:
    """Clients may fetch the intermediate (AIA) or fail: serving what was sent is the operator's choice."""
    issued = public_ca.issue([HOST])
    leaf = pem_blocks(issued.certificate_pem)[0]
    validation = with_good(public_ca, config(HOST, leaf, issued.private_key_pem))
    assert validation.problems == ()


def test_a_key_matching_no_certificate_of_the_chain_is_a_private_key_error(public_ca: PublicLikeCA) -> None:
    issued, other = public_ca.issue([HOST]), public_ca.issue([HOST])
    validation = with_good(public_ca, config(HOST, issued.certificate_pem, other.private_key_pem))
    problems = [p for p in validation.problems if p.host == HOST]
    assert [(p.field, p.message) for p in problems] == [("privateKey", "does not match the certificate in publicKey")]
