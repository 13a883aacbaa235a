"""bcrypt hashes for basic auth, computed once per (user, password).

Called by the renderer through `PasswordHasher`. A hash costs 60-250 ms, and bcrypt salts are random, so without
this cache every route set would cost seconds per authed host and the rendered JSON would never be
byte-identical, forcing a Caddy reload on every update. The cache lives as long as the process.
"""

from __future__ import annotations

import hashlib

import bcrypt

from coretraffic.core.validate import BasicAuth


class BcryptHasher:
    def __init__(self, cost: int = 10) -> None:
        # Cost 10 is about 60 ms here; Caddy caches verified credentials (`hash_cache`), so per-request cost is
        # paid once per client and the cost mainly guards the hash at rest (Caddy's autosave).
        self._cost = cost
        # Keyed by a digest, not the password itself, so the map holds no clear-text secret.
        self._hashes: dict[tuple[str, bytes], str] = {}

    def __call__(self, auth: BasicAuth) -> str:
        key = (auth.user, hashlib.sha256(auth.password.encode()).digest())
        cached = self._hashes.get(key)
        if cached is None:
            cached = bcrypt.hashpw(auth.password.encode(), bcrypt.gensalt(self._cost)).decode()
            self._hashes[key] = cached
        return cached
