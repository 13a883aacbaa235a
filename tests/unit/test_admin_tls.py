"""An https admin address without usable mutual-TLS material stops `coretraffic run` at start: exit 2, one line
naming the flag and the path, and never a byte of the private key.

Real files and real OpenSSL parsing (`ssl.SSLContext`); nothing listens. The routes file does not exist: were the
check missing, the one line would name it instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coretraffic import cli
from coretraffic.caddy.admin import AdminAddress, CaddyAdmin
from coretraffic.testing.admin_gate import MutualTLSFiles, write_mutual_tls
from coretraffic.testing.pki import DemoCA


@pytest.fixture(autouse=True)
def no_coretraffic_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith("CORETRAFFIC_")]:
        monkeypatch.delenv(name)
    yield


@pytest.fixture
def files(tmp_path: Path, ca: DemoCA) -> MutualTLSFiles:
    return write_mutual_tls(tmp_path / "tls", ca)


def run_with(capsys: pytest.CaptureFixture[str], tmp_path: Path, cert: Path, key: Path, ca: Path) -> str:
    code = cli.main(
        [
            "run",
            "--caddy-admin", "https://caddy-0.edge.example:2021",
            "--admin-client-cert", str(cert),
            "--admin-client-key", str(key),
            "--admin-ca", str(ca),
            "--routes", str(tmp_path / "routes.json"),
            "--status-addr", "",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_missing_key_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path, files: MutualTLSFiles) -> None:
    absent = tmp_path / "absent.key"
    line = run_with(capsys, tmp_path, files.driver_cert, absent, files.ca)
    assert f"--admin-client-key {absent}: cannot be read (No such file or directory)" in line


def test_an_unreadable_ca_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path, files: MutualTLSFiles) -> None:
    # A directory: unreadable as a file even for root, who reads past file modes.
    line = run_with(capsys, tmp_path, files.driver_cert, files.driver_key, tmp_path)
    assert f"--admin-ca {tmp_path}: cannot be read" in line


def test_a_ca_that_is_not_pem_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: MutualTLSFiles
) -> None:
    line = run_with(capsys, tmp_path, files.driver_cert, files.driver_key, files.driver_key)
    assert f"--admin-ca {files.driver_key}: not a PEM CA certificate" in line
    assert "PRIVATE KEY" not in line


def test_a_key_of_another_certificate_is_refused_without_showing_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: MutualTLSFiles, ca: DemoCA
) -> None:
    other = tmp_path / "other.key"
    other.write_text(ca.issue(["someone-else"]).private_key_pem)
    line = run_with(capsys, tmp_path, files.driver_cert, other, files.ca)
    assert "not a matching PEM certificate and key" in line and "--admin-client-key" in line
    body = "".join(other.read_text().splitlines()[1:-1])
    assert "PRIVATE KEY" not in line and body[:40] not in line


def test_a_remote_address_is_never_reached_in_plain_http() -> None:
    with pytest.raises(ValueError, match="needs its mutual-TLS transport"):
        CaddyAdmin(AdminAddress("https://caddy-0.edge.example:2021"))
