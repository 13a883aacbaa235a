"""Unit tests of `coretraffic.caddyjson.redact`: secrets become fingerprints wherever they sit in a config."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from coretraffic.caddyjson.redact import fingerprint, redact, value_text
from tests.support import golden

GOLDEN = golden.RENDER_CASES
CANARY = "CANARY-SECRET-9f8e"
KEY = f"-----BEGIN PRIVATE KEY-----\n{CANARY}-key\n-----END PRIVATE KEY-----\n"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB-cert\n-----END CERTIFICATE-----\n"
HASH = f"$2b$10${CANARY}-hash"

KEY_SHOWN = re.compile(r"^<redacted private key sha256:[0-9a-f]{16}>$")
HASH_SHOWN = re.compile(r"^<redacted password hash sha256:[0-9a-f]{16}>$")
CERTIFICATE_SHOWN = re.compile(r"^<certificate sha256:[0-9a-f]{16}>$")


def pem_entry(key: str = KEY, certificate: str = CERTIFICATE) -> dict[str, Any]:
    return {"certificate": certificate, "key": key, "tags": ["app.example.test"]}


def account(password: str = HASH) -> dict[str, Any]:
    return {"username": "alice", "password": password}


def nested(depth: int, leaf: Any) -> Any:
    """`leaf` buried under alternating dicts and lists."""
    for level in range(depth):
        leaf = {"level": level, "inner": leaf} if level % 2 else [0, leaf, "x"]
    return leaf


def walk(node: Any, key: str) -> list[Any]:
    """Every value stored under `key`, at any depth."""
    if isinstance(node, list):
        return [v for item in node for v in walk(item, key)]
    if isinstance(node, dict):
        own = [node[key]] if key in node else []
        return own + [v for value in node.values() for v in walk(value, key)]
    return []


def test_tls_key_is_redacted_at_the_top() -> None:
    redacted = redact(pem_entry())
    assert KEY_SHOWN.match(redacted["key"])
    assert redacted["certificate"] == CERTIFICATE
    assert redacted["tags"] == ["app.example.test"]


def test_password_hash_is_redacted_at_the_top() -> None:
    redacted = redact(account())
    assert HASH_SHOWN.match(redacted["password"])
    assert redacted["username"] == "alice"


@pytest.mark.parametrize("depth", [1, 2, 5, 12])
def test_secrets_are_redacted_at_any_depth(depth: int) -> None:
    document = {"a": nested(depth, pem_entry()), "b": nested(depth, {"accounts": [account()]})}
    redacted = redact(document)
    assert CANARY not in json.dumps(redacted)
    (key,) = walk(redacted, "key")
    (password,) = walk(redacted, "password")
    assert KEY_SHOWN.match(key)
    assert HASH_SHOWN.match(password)
    assert walk(redacted, "certificate") == [CERTIFICATE]


def test_rendered_configs_keep_no_secret() -> None:
    for case in ("plain", "multi", "base"):
        config = json.loads((GOLDEN / case / "expected.json").read_text())
        keys, passwords = walk(config, "key"), walk(config, "password")
        assert keys and all("PRIVATE KEY" in k for k in keys)  # the goldens do hold secrets
        redacted = redact(config)
        text = json.dumps(redacted)
        assert "PRIVATE KEY" not in text
        assert "$2b$" not in text
        assert [fingerprint(k) for k in keys] == [k.rsplit(":", 1)[1][:-1] for k in walk(redacted, "key")]
        assert len(walk(redacted, "password")) == len(passwords)
        assert all(HASH_SHOWN.match(p) for p in walk(redacted, "password"))
        assert all("BEGIN CERTIFICATE" in c for c in walk(redacted, "certificate"))


def test_multi_golden_has_a_password_hash_to_redact() -> None:
    config = json.loads((GOLDEN / "multi" / "expected.json").read_text())
    assert walk(config, "password") == ["$2b$04$fake-alice"]
    assert HASH_SHOWN.match(walk(redact(config), "password")[0])


def test_fingerprints_are_stable_and_differ_between_secrets() -> None:
    assert redact(pem_entry()) == redact(pem_entry())
    assert redact(account()) == redact(account())
    assert redact(pem_entry())["key"] != redact(pem_entry(key=KEY + "\n"))["key"]
    assert redact(account())["password"] != redact(account(HASH + "x"))["password"]
    assert fingerprint("a") == fingerprint("a")
    assert fingerprint("a") != fingerprint("b")
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(KEY))
    assert fingerprint(KEY) in redact(pem_entry())["key"]
    assert fingerprint(HASH) in redact(account())["password"]


def test_certificates_are_kept_unless_asked() -> None:
    document = {"load_pem": [pem_entry(), pem_entry(certificate=CERTIFICATE + "chain")]}
    kept = redact(document)
    assert [e["certificate"] for e in kept["load_pem"]] == [CERTIFICATE, CERTIFICATE + "chain"]
    shown = redact(document, certificates=True)
    first, second = (e["certificate"] for e in shown["load_pem"])
    assert CERTIFICATE_SHOWN.match(first) and CERTIFICATE_SHOWN.match(second)
    assert first != second
    assert fingerprint(CERTIFICATE) in first
    assert all(KEY_SHOWN.match(e["key"]) for e in shown["load_pem"])


def test_certificates_flag_reaches_nested_entries() -> None:
    shown = redact(nested(6, pem_entry()), certificates=True)
    (certificate,) = walk(shown, "certificate")
    assert CERTIFICATE_SHOWN.match(certificate)


@pytest.mark.parametrize(
    "document",
    [
        {"key": "X-Header", "value": "v"},  # a "key" outside a load_pem entry
        {"password": "plain", "user": "no username field"},
        {"certificate": CERTIFICATE, "key": 5},
        {"username": "alice", "password": None},
        {"match": [{"host": ["app.example.test"]}], "handle": [{"handler": "static_response", "body": "key"}]},
        ["key", "password", 1, None, True],
        "a string",
        42,
        None,
    ],
)
def test_other_values_are_left_alone(document: Any) -> None:
    assert redact(document) == document


def test_input_is_not_modified() -> None:
    document = {"apps": {"tls": {"certificates": {"load_pem": [pem_entry()]}}}, "accounts": [account()]}
    before = copy.deepcopy(document)
    redacted = redact(document, certificates=True)
    assert document == before
    assert redacted != document


def test_value_text_hides_secret_named_fields_at_any_depth_and_pems() -> None:
    text = value_text({"dns": {"api_token": "CANARY-TOKEN"}, "n": 3})
    assert "CANARY" not in text and '"n":3' in text and '"api_token":"<redacted sha256:' in text
    assert value_text({"client_key": "CANARY-KEY"}).startswith('{"client_key":"<redacted sha256:')
    assert value_text("-----BEGIN PRIVATE KEY-----\nCANARY\n", "anything").startswith('"<PEM sha256:')
    assert value_text("CANARY", "password").startswith('"<redacted sha256:')


def test_value_text_cuts_long_values() -> None:
    text = value_text(list(range(1000)))
    assert len(text) == 80 and text.endswith("...")


def test_value_text_hides_a_secret_that_looks_like_a_redaction_marker() -> None:
    assert "CANARY" not in value_text({"api_token": "<CANARY>"})
