"""The engine suite's shared ground: the engines must be there (installed by .ci/run from Debian), the images
built once a session (tests/support/engines/images.py), one run at a time on a machine (a lock: the suite's namespaces
and addresses are fixed names)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engines import images

# What the suite runs, from Debian packages: docker.io (dockerd, containerd, runc, Debian's client), podman with
# catatonit (its pods' infra), debootstrap (the base), util-linux and iproute2 (the nodes' namespaces).
TOOLS = {
    "/usr/sbin/dockerd": "docker.io",
    "/usr/bin/docker": "docker.io",
    "podman": "podman",
    "catatonit": "catatonit",
    "debootstrap": "debootstrap",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "ip": "iproute2",
}


def missing_tools() -> list[str]:
    found = (shutil.which(tool) or (tool if Path(tool).exists() else None) for tool in TOOLS)
    return sorted({TOOLS[tool] for tool, path in zip(TOOLS, found, strict=True) if path is None})


def require_engines() -> None:
    """Skip without root or the engines (a developer's machine); under CI=true, fail instead: CI installs them."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("the engines need root")
    if missing := missing_tools():
        reasons.append(f"missing Debian packages: {' '.join(missing)} (.ci/run installs them)")
    if reasons:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(reasons))
        pytest.skip("; ".join(reasons))


@pytest.fixture(scope="session")
def engines_lock() -> Iterator[None]:
    require_engines()
    images.CACHE.mkdir(parents=True, exist_ok=True)
    with (images.CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def built_images(engines_lock: None) -> None:
    images.build_images()
