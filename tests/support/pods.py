"""Caddies as pods and Caddies found by DNS: what the fleet tests drive.

`Pod`: a Caddy in a network namespace of its own (`unshare -n`, loopback up), as a pod has, with an HTTP
upstream beside it in the same namespace. The namespace is held by the upstream process, so the Caddy can be
killed, frozen and started again in the same namespace (`nsenter --net`). The admin API is a unix socket in the
pod's directory: the filesystem is shared, so the driver reaches every pod's Caddy while their networks are
apart. Each pod's Caddy starts from a bootstrap config that opens only the admin socket and never `--resume`s,
so a restarted Caddy serves nothing until the driver loads it again. Requests to a pod's data plane are made from
inside its namespace (`Pod.get`: a Python child under `nsenter`).

`LoopbackCaddy`: a plain Caddy with its admin API on a loopback address of its own (127.0.0.x), for discovery
through DNS: the records are IP addresses.

The DNS server that names them is `tests/support/dns.py`'s dnsmasq.

Creating network namespaces needs root; `require_root` skips a test with the reason elsewhere and fails it when
CI=true.

`Pod(..., mounted_at=...)` adds a mount namespace with the pod's directory bind-mounted at one path, the same in
every pod: as `/shared` is in the deployments, so one `--remote-admin-listen` names every Caddy's own socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from coretraffic.caddy.process import find_caddy_binary
from coretraffic.testing.pki import DemoCA

UPSTREAM_PORT = 9080  # inside every pod's namespace: the same number in each, as in pods
_MOUNTED_MARK = ".pod"  # in each pod's directory: seen at the mount point once the pod's mount is in place
_STOP_S = 10.0

# A GET from inside a pod's namespace: argv host, port, CA file; prints the status code, or 0 on any error.
_PROBE = """
import socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET / HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
            print(tls.recv(64).split()[1].decode())
except Exception:
    print(0)
"""
_METRICS_PROBE = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())
except OSError:
    pass
"""


def require_root() -> None:
    if os.geteuid() != 0:
        reason = "creating network namespaces (unshare -n) needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI runs as root")
        pytest.skip(reason)


def _caddy_env(directory: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(directory / "config"),
        "XDG_DATA_HOME": str(directory / "data"),
        "HOME": str(directory),
    }


class _Caddy:
    """A `caddy run` on a bootstrap config in `directory`, killable, freezable and restartable."""

    def __init__(self, directory: Path, admin_listen: str, prefix: list[str], own_listen: str | None = None) -> None:
        """`admin_listen` is where the test reaches the admin API; `own_listen`, when it differs (another mount
        namespace), the same place as the Caddy itself names it."""
        directory.mkdir(mode=0o700, exist_ok=True)
        self.directory = directory
        self.admin_listen = admin_listen
        self._prefix = prefix
        self._bootstrap = directory / "bootstrap.json"
        self._bootstrap.write_text(json.dumps({"admin": {"listen": own_listen or admin_listen}}))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        socket_path = self.admin_listen.removeprefix("unix/")
        if self.admin_listen.startswith("unix/") and os.path.exists(socket_path):
            os.unlink(socket_path)  # left by a killed Caddy
        self.process = subprocess.Popen(
            [*self._prefix, str(find_caddy_binary()), "run", "--config", str(self._bootstrap)],
            env=_caddy_env(self.directory),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=_STOP_S)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def _client(self) -> httpx.AsyncClient:
        if self.admin_listen.startswith("unix/"):
            transport = httpx.AsyncHTTPTransport(uds=self.admin_listen.removeprefix("unix/"))
            return httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=2)
        port = self.admin_listen.rpartition(":")[2]  # Caddy refuses 127.0.0.x:port as Host, takes localhost
        return httpx.AsyncClient(
            base_url=f"http://{self.admin_listen}", headers={"Host": f"localhost:{port}"}, timeout=2
        )

    async def answers(self) -> bool:
        """Whether its admin API answers at all."""
        try:
            async with self._client() as client:
                return (await client.get("/config/")).status_code == 200
        except httpx.TransportError:
            return False

    async def runs(self, marker: str) -> bool:
        """Whether its running config holds `@id` `marker` (the driver's config marker)."""
        try:
            async with self._client() as client:
                return (await client.get(f"/id/{marker}")).status_code == 200
        except httpx.TransportError:
            return False

    async def hosts(self) -> set[str]:
        """The hosts its running config routes (the `@id`s of coretraffic's routes)."""
        try:
            async with self._client() as client:
                text = (await client.get("/config/")).text
        except httpx.TransportError:
            return set()
        prefix = '"coretraffic_route_'
        return {part.split('"', 1)[0] for part in text.split(prefix)[1:]}


class Pod(_Caddy):
    def __init__(self, directory: Path, *, mounted_at: Path | None = None) -> None:
        """`mounted_at`: the pod also has a mount namespace of its own, with `directory` bind-mounted there, so
        that every such pod's Caddy keeps its admin socket at the same path (`/shared` in the deployments) while
        the test, and an admin gate, reach each one in its directory."""
        directory.mkdir(mode=0o700)
        (directory / _MOUNTED_MARK).touch()
        mount = "" if mounted_at is None else f'mount --bind "{directory}" "{mounted_at}" && '
        # The namespace's holder: the upstream, `exec`ed by the shell that brought loopback up.
        self._holder = subprocess.Popen(
            [
                "unshare",
                "-n",
                *([] if mounted_at is None else ["-m", "--propagation", "private"]),
                "sh",
                "-c",
                f'ip link set lo up && {mount}exec "$0" -m http.server {UPSTREAM_PORT} --bind 127.0.0.1',
                sys.executable,
            ],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.netns = f"/proc/{self._holder.pid}/ns/net"
        enter = ["nsenter", f"--net={self.netns}"]
        own_listen = None
        if mounted_at is not None:
            self._wait_mounted(mounted_at)
            enter.append(f"--mount=/proc/{self._holder.pid}/ns/mnt")
            own_listen = f"unix/{mounted_at / 'admin.sock'}"
        super().__init__(directory, f"unix/{directory / 'admin.sock'}", enter, own_listen)

    def _wait_mounted(self, mounted_at: Path) -> None:
        """Until the holder's mount namespace shows the pod's directory at `mounted_at` (seen through its root)."""
        seen = Path(f"/proc/{self._holder.pid}/root") / mounted_at.relative_to("/") / _MOUNTED_MARK
        give_up = time.monotonic() + _STOP_S
        while not seen.exists():
            assert self._holder.poll() is None, "the pod's namespace holder exited"
            assert time.monotonic() < give_up, f"{self.directory} not mounted at {mounted_at} in {_STOP_S} s"
            time.sleep(0.01)  # polling a condition with a deadline, not synchronising by sleep

    @property
    def name(self) -> str:
        """The pod's Caddy as the driver names it."""
        return self.admin_listen

    async def get(self, ca_file: Path, port: int, host: str) -> int:
        """The status of a verified HTTPS GET with SNI `host` to 127.0.0.1:`port` inside the pod (0: it failed)."""
        probe = await asyncio.create_subprocess_exec(
            "nsenter",
            f"--net={self.netns}",
            sys.executable,
            "-c",
            _PROBE,
            host,
            str(port),
            str(ca_file),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await probe.communicate()
        return int(out.strip() or 0)

    async def caddy_metrics(self, port: int) -> str:
        """Caddy's own `/metrics` on 127.0.0.1:`port` inside the pod (its metrics listener; "" when none answers)."""
        probe = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={self.netns}", sys.executable, "-c", _METRICS_PROBE, str(port),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await probe.communicate()
        return out.decode()

    def remove(self) -> None:
        self.stop()
        self._holder.terminate()
        self._holder.wait(timeout=_STOP_S)


class LoopbackCaddy(_Caddy):
    def __init__(self, directory: Path, admin_host: str, admin_port: int) -> None:
        super().__init__(directory, f"{admin_host}:{admin_port}", [])

    @property
    def name(self) -> str:
        return f"http://{self.admin_listen}"


def write_ca(ca: DemoCA, directory: Path) -> Path:
    path = directory / "ca.pem"
    path.write_text(ca.certificate_pem)
    return path
