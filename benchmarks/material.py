"""Certificates for the large benchmarks, issued once and kept under the system's temp directory.

Issuing 100,000 certificates takes a quarter of a minute, and 10,000 RSA keys would take minutes; a rerun finds
them on disk instead. Every host still gets a certificate of its own (Caddy's cache holds one entry per
certificate, and validation caches by content), and every EC host a key of its own; RSA hosts share one key, as
generating one costs tens of milliseconds. The file is keyed by the host names and the key type, so another list
of names is issued anew. Certificates are valid for 825 days from the day they were issued; a file older than a
year is issued again.

The bench CA is kept there too, so that every file is issued by the same root: the drivers the benchmarks start
trust it (`trust_bundle`: `SSL_CERT_FILE`), as a cluster's machines trust their private CA, so their leaves reach
a root and no host is warned about (`core.trust`), as in a cluster set up right.

`python -m benchmarks.material COUNT PORT > routes.json` writes a routes file of COUNT such hosts
(`h00000.bench.test`, ...) proxied to 127.0.0.1:PORT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from coretraffic.testing.pki import DemoCA, IssuedCertificate, KeyType, new_key, route_config

CACHE_DIR = Path(tempfile.gettempdir()) / "coretraffic-bench-certificates"
MAX_AGE_S = 365 * 86400


def bench_ca() -> DemoCA:
    """The CA every benchmark certificate comes from, made once and kept in CACHE_DIR (key 0600)."""
    certificate, key = CACHE_DIR / "bench-ca.pem", CACHE_DIR / "bench-ca-key.pem"
    if certificate.is_file() and key.is_file():
        return DemoCA.from_pem(certificate.read_text(), key.read_text())
    ca = DemoCA("coretraffic bench CA")
    CACHE_DIR.mkdir(mode=0o700, exist_ok=True)
    key.touch(mode=0o600)
    key.write_text(ca.private_key_pem)
    certificate.write_text(ca.certificate_pem)
    return ca


def trust_bundle() -> Path:
    """A PEM file of the system's trusted roots and the bench CA's, for a driver's `SSL_CERT_FILE`."""
    system = ssl.get_default_verify_paths().cafile
    path = CACHE_DIR / "trust.pem"
    CACHE_DIR.mkdir(mode=0o700, exist_ok=True)
    path.write_text((Path(system).read_text() if system else "") + bench_ca().certificate_pem)
    return path


def issued(names: Sequence[str], key_type: KeyType = "ec") -> list[IssuedCertificate]:
    """A certificate (leaf for one name, from the bench CA) and its key for each of `names`, in order."""
    ca = bench_ca()
    digest = hashlib.sha256("\0".join([key_type, ca.certificate_pem, *names]).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{key_type}-{len(names)}-{digest}.json"
    if path.exists() and time.time() - path.stat().st_mtime < MAX_AGE_S:
        return [IssuedCertificate(certificate, key) for certificate, key in json.loads(path.read_text())]
    shared_key = new_key("rsa") if key_type == "rsa" else None
    made = [ca.issue([name], key=shared_key) for name in names]
    CACHE_DIR.mkdir(mode=0o700, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # a concurrent run never reads half a file
    partial.write_text(json.dumps([[c.certificate_pem, c.private_key_pem] for c in made]))
    partial.replace(path)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.material", description="print a routes file")
    parser.add_argument("count", type=int, help="hosts")
    parser.add_argument("port", type=int, help="upstream port on 127.0.0.1")
    parser.add_argument("--key-type", choices=["ec", "rsa"], default="ec")
    args = parser.parse_args()
    from benchmarks.harness import hosts  # the harness imports this module

    names = hosts(args.count)
    configs = [route_config(n, c, args.port) for n, c in zip(names, issued(names, args.key_type), strict=True)]
    json.dump(configs, sys.stdout)


if __name__ == "__main__":
    main()
