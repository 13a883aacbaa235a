"""The system's trusted roots, read once per process: what a chain must reach for `core.trust` not to warn.

Where OpenSSL (and so Python's `ssl`) finds them: `ssl.get_default_verify_paths()`, which honours
`SSL_CERT_FILE` and `SSL_CERT_DIR` (a cluster with a private CA can add its root there, as its clients would).
The bundle file if there is one (Debian's `/etc/ssl/certs/ca-certificates.crt`, about 150 roots, a few
milliseconds to index), else every file of the directory. A system without any: no root is trusted, every chain
that does not end with a self-signed certificate is warned about, and the log says why, once. Not certifi's
bundle: the store asked is the machine's own, the one an operator (or an image) can extend.
"""

from __future__ import annotations

import functools
import logging
import ssl
from pathlib import Path

from coretraffic.core.trust import TrustedRoots

log = logging.getLogger("coretraffic")


@functools.cache
def system_roots() -> TrustedRoots:
    """The system's trusted roots, indexed by subject (cached: the store is read at most once per process)."""
    paths = ssl.get_default_verify_paths()
    roots = TrustedRoots.from_pem(_bundles(paths.cafile, paths.capath))
    if not roots.subjects:
        log.warning(
            "no trusted root certificates found (SSL_CERT_FILE, SSL_CERT_DIR): every chain that does not "
            "end with a root is warned about"
        )
    return roots


def _bundles(cafile: str | None, capath: str | None) -> list[bytes]:
    if cafile is not None:
        try:
            return [Path(cafile).read_bytes()]
        except OSError:
            pass
    if capath is None:
        return []
    try:
        files = sorted(p for p in Path(capath).iterdir() if p.is_file())
    except OSError:
        return []
    bundles = []
    for path in files:
        try:
            bundles.append(path.read_bytes())
        except OSError:
            continue
    return bundles
