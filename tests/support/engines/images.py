"""The images the engine tests run, made here from Debian packages: nothing comes from a container registry.

- the base: a Debian bookworm root made with `debootstrap` from the Debian mirror (python3, python3-venv, a
  `python` link, this machine's CA bundle and pip's pointer to it), imported into podman. It stands in for the
  official `python:3.11-slim` (Docker Hub is not reachable). The root is cached as a tarball under
  `CACHE` (outside the repo), keyed by what goes into it, so a second run imports it in seconds;
- the project's image: the `Containerfile` as shipped, its base given as the `BASE` build argument;
- Coreflow's stand-in: the real TypedSocket server of tests/peer on the base plus Debian's `nodejs`.

Builds run with podman on the host's network (pip and apt reach PyPI and the mirror); podman keeps its images in
a storage of its own under `CACHE`, whose layer cache makes a rebuild of an unchanged tree take seconds. The
Swarm nodes get the images with `docker load` from a `podman save` archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.support import paths

CACHE = Path(os.environ.get("CORETRAFFIC_ENGINES_CACHE", "/var/cache/coretraffic-engines"))
MIRROR = os.environ.get("CORETRAFFIC_ENGINES_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

BASE_IMAGE = "localhost/coretraffic-engines-base:bookworm"
PROJECT_IMAGE = "localhost/coretraffic:latest"  # as deploy/ names it
PEER_IMAGE = "localhost/coretraffic-engines-coreflow:latest"
ENGINE_TESTS = paths.TESTS / "engines"  # where the stand-in's Containerfile lives
REPO = paths.REPO


def podman_argv(*args: str) -> list[str]:
    """podman with the suite's own storage: nothing of it mixes with other images on the machine."""
    return [
        "podman",
        "--root",
        str(CACHE / "podman" / "storage"),
        "--runroot",
        "/run/coretraffic-engines/podman",
        *args,
    ]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(podman_argv(*args), timeout=timeout, check=check)


def run(
    argv: list[str],
    *,
    timeout: float,
    check: bool = True,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """argv to completion; on failure the error carries its output (the point of an engine test is the why)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _base_key() -> str:
    """What the base root is made from: a new package list, mirror or CA bundle makes a new root."""
    material = "\n".join([SUITE, MIRROR, *PACKAGES, hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def base_tarball() -> Path:
    """The cached root tarball, made with debootstrap when missing (about 1.5 min here)."""
    tarball = CACHE / f"base-{SUITE}-{_base_key()}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / "root.partial"
    shutil.rmtree(root, ignore_errors=True)
    try:
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), MIRROR],
            timeout=900,
        )
        # This machine's CA bundle (its proxy's CA among them) and pip told to use it: the venv's pip would
        # otherwise trust only its own certifi.
        shutil.copyfile(HOST_CA_BUNDLE, root / HOST_CA_BUNDLE.relative_to("/"))
        (root / "etc" / "pip.conf").write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
        for leftover in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            leftover.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], timeout=300)
        partial.rename(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def build_images() -> None:
    """The base (imported from the cached root), the project's image and the stand-in's, in podman's storage."""
    tarball = base_tarball()
    label = f"coretraffic.engines.base={tarball.name}"
    have = podman(
        "image", "inspect", "--format", '{{index .Labels "coretraffic.engines.base"}}', BASE_IMAGE, check=False
    )
    if have.returncode != 0 or have.stdout.strip() != tarball.name:
        podman("import", "--change", f"LABEL {label}", str(tarball), BASE_IMAGE)
    version = run(
        [
            str(Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "python"),
            "-c",
            "import coretraffic; print(coretraffic.__version__)",
        ],
        timeout=60,
    ).stdout.strip()
    # The Containerfile as shipped; only its base is given.
    _build(PROJECT_IMAGE, REPO / "Containerfile", REPO, "--build-arg", f"VERSION={version}")
    _build(PEER_IMAGE, ENGINE_TESTS / "coreflow.Containerfile", paths.PEER)
    _prune()


def _build(image: str, containerfile: Path, context: Path, *more: str) -> None:
    """`image` from `containerfile` on the offline base, in podman's storage."""
    podman(
        "build", "--pull=never", "--network=host", "--format=docker", "--build-arg", f"BASE={BASE_IMAGE}", *more,
        "-t", image, "-f", str(containerfile), str(context), timeout=900,
    )  # fmt: skip


def upstream_container(network: str, address: str, port: int) -> list[str]:
    """`run` arguments for an upstream on `network` at `address`: Python's http.server on the base image."""
    return [
        "--detach", "--name", "upstream", "--network", network, "--ip", address,
        BASE_IMAGE, "python3", "-m", "http.server", str(port), "--directory", "/etc",
    ]  # fmt: skip


def coreflow_container(network: str) -> list[str]:
    """`run` arguments for Coreflow's stand-in on `network`, named `coreflow`, driven over its stdin and stdout."""
    return [
        "--interactive", "--rm", "--name", "coreflow", "--network", network,
        PEER_IMAGE, "--host", "0.0.0.0", "--port", "3000",
    ]  # fmt: skip


def _prune() -> None:
    """Images left without a name by rebuilds a day ago or more: each change of the tree leaves some, and the cache
    would grow for ever. Younger ones stay: they are the build cache of the next run (the build stage's pip
    install among them)."""
    podman("image", "prune", "--force", "--filter", "until=24h", timeout=300)


def save_archive(path: Path, *names: str) -> Path:
    """A docker-archive of `names`, for `docker load` on Swarm nodes."""
    path.unlink(missing_ok=True)
    podman("save", "--multi-image-archive", "--format=docker-archive", "-o", str(path), *names)
    return path
