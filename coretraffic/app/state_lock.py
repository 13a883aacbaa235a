"""One driver per state directory, for the driver's whole life.

Two drivers on one state directory would rewrite each other's files (the demo's routes and CA), start a second
Caddy on the same ports and delete the first one's admin socket when they exit. So `run` (with a spawned Caddy)
and `demo` hold an exclusive `flock` on `STATE_DIR/lock` while they run: the kernel releases it when the process
ends, however it ends, so a killed driver never leaves a stale lock behind. The file holds the holder's pid, so
that the second driver can say who has it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from coretraffic.caddy.process import prepare_state_dir
from coretraffic.errors import StateDirInUse

LOCK_FILE = "lock"


@contextlib.contextmanager
def state_dir_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state directory (created 0700 if need be) until the block ends; StateDirInUse if another has it."""
    prepare_state_dir(state_dir)
    # O_CLOEXEC: the spawned Caddy must not inherit the lock and hold it past the driver.
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StateDirInUse(
                f"state directory {state_dir} is in use by another coretraffic (pid {holder}); "
                "give each driver its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def is_held(state_dir: Path) -> bool:
    """Whether a live driver holds the state directory's lock (a crashed one's lock is gone with it).

    It asks by taking the lock shared for an instant: a driver starting in that instant would find it in use.
    """
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock: no driver could have taken it either
        return False
    finally:
        os.close(fd)  # releases the shared lock if it was taken
    return False
