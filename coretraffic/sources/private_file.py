"""Writing a file of the state directory that only the driver may read: mode 0600, replaced whole."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (0600, in a 0700 directory made if missing): a reader sees the old file or the
    new one, never half of one. Raises OSError."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(data)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
