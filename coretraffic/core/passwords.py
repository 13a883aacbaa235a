"""bcrypt hashes for basic auth: the same hash for the same credential on the same host, on every render.

Called by the renderer through `PasswordHasher`. A hash costs 60-250 ms, so each (host key, user, password) is
hashed once per process. bcrypt's salt is not drawn at random but derived: HMAC-SHA256, keyed by a digest of the
host's private key, of the user and the password. So the rendered JSON is byte-identical across renders and
driver restarts (an unchanged set causes no reload after a restart), while the salt stays what a salt must be:
different for every host and every credential, and unknown to anyone without the host's private key, so no table
can be computed ahead. Rotating the key or the password changes the hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt

from coretraffic.core.validate import BasicAuth

# bcrypt writes its 16 salt bytes in base64 with an alphabet of its own, in the same bit order as standard base64.
_TO_BCRYPT_ALPHABET = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)


class BcryptHasher:
    def __init__(self, cost: int = 10) -> None:
        # Cost 10 is about 60 ms here; Caddy caches verified credentials (`hash_cache`), so per-request cost is
        # paid once per client and the cost mainly guards the hash at rest (Caddy's autosave).
        self._cost = cost
        # Keyed by a digest, not the password itself, so the map holds no clear-text secret.
        self._hashes: dict[tuple[str, bytes, bytes], str] = {}

    def __call__(self, auth: BasicAuth) -> str:
        key = (auth.user, hashlib.sha256(auth.password.encode()).digest(), auth.salt_key)
        cached = self._hashes.get(key)
        if cached is None:
            cached = bcrypt.hashpw(auth.password.encode(), self._salt(auth)).decode()
            self._hashes[key] = cached
        return cached

    def _salt(self, auth: BasicAuth) -> bytes:
        seed = hmac.new(auth.salt_key, f"{auth.user}\0{auth.password}".encode(), hashlib.sha256).digest()[:16]
        encoded = base64.b64encode(seed).rstrip(b"=").translate(_TO_BCRYPT_ALPHABET)
        return b"$2b$%02d$" % self._cost + encoded
