"""Unit tests of `coretraffic.core.passwords`: real bcrypt hashes, the same on every render, unique per host."""

from __future__ import annotations

import subprocess
import sys

import bcrypt

from coretraffic.core.passwords import BcryptHasher
from coretraffic.core.validate import BasicAuth

ALICE = BasicAuth("alice", "correct horse", b"host key digest one")


def test_the_hash_is_real_bcrypt_at_the_configured_cost() -> None:
    hashed = BcryptHasher(5)(ALICE)
    assert hashed.startswith("$2b$05$")
    assert bcrypt.checkpw(b"correct horse", hashed.encode())
    assert not bcrypt.checkpw(b"wrong horse", hashed.encode())


def test_the_same_credential_on_the_same_host_hashes_the_same_in_another_process() -> None:
    code = (
        "from coretraffic.core.passwords import BcryptHasher; from coretraffic.core.validate import BasicAuth; "
        "print(BcryptHasher(4)(BasicAuth('alice', 'correct horse', b'host key digest one')))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == BcryptHasher(4)(ALICE)


def test_salts_differ_by_host_key_user_and_password() -> None:
    hasher = BcryptHasher(4)
    salts = {
        hasher(auth)[:29]  # "$2b$04$" and the 22 salt characters
        for auth in (
            ALICE,
            BasicAuth("alice", "correct horse", b"host key digest two"),
            BasicAuth("bob", "correct horse", b"host key digest one"),
            BasicAuth("alice", "battery staple", b"host key digest one"),
        )
    }
    assert len(salts) == 4
