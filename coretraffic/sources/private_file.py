"""The files of the state directory that only the driver may read: written 0600 and replaced whole, read as JSON."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from coretraffic.errors import StateFileError


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


def read_private_json(path: Path) -> Any:
    """The JSON document at `path`; None when there is no such file. StateFileError, a line naming the file and
    what is wrong, when it cannot be read or is not JSON."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise StateFileError(f"{path} is not valid JSON") from None
