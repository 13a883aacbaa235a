"""`sources.trust_store`: the system's roots, where OpenSSL finds them, read once per process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from coretraffic.sources import trust_store
from coretraffic.testing.pki import DemoCA


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    trust_store.system_roots.cache_clear()
    yield
    trust_store.system_roots.cache_clear()  # the next test gets the real store again


def subject(ca: DemoCA) -> str:
    return x509.load_pem_x509_certificate(ca.certificate_pem.encode()).subject.rfc4514_string()


def test_ssl_cert_file_is_the_store_and_it_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = DemoCA("store root one"), DemoCA("store root two")
    bundle = tmp_path / "roots.pem"
    bundle.write_text(first.certificate_pem + second.certificate_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert trust_store.system_roots().subjects == {subject(first), subject(second)}
    bundle.write_text(first.certificate_pem)
    assert subject(second) in trust_store.system_roots().subjects  # cached: not read again


def test_a_directory_of_roots_when_there_is_no_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    roots = [DemoCA(f"dir root {i}") for i in range(3)]
    for i, ca in enumerate(roots):
        (tmp_path / f"{i}.pem").write_text(ca.certificate_pem)
    (tmp_path / "README").write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "absent.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    assert trust_store.system_roots().subjects == {subject(ca) for ca in roots}


def test_no_store_at_all_trusts_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "absent.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "absent"))
    with caplog.at_level(logging.WARNING):
        assert trust_store.system_roots().subjects == frozenset()
    assert any("no trusted root certificates found" in r.getMessage() for r in caplog.records)


def test_the_machines_own_store_holds_public_roots() -> None:
    """Where it has one (Debian's ca-certificates, as in the container image): a public CA's leaf needs no more."""
    if not Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        pytest.skip("no system trust store on this machine")
    assert "CN=ISRG Root X1,O=Internet Security Research Group,C=US" in trust_store.system_roots().subjects
