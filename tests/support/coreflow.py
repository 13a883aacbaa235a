"""Coreflow's end of the link: the real TypedSocket peer (tests/peer) driven over stdin/stdout, a stub routing
handler, a watcher that lets tests wait on the client's state instead of sleeping, and a CoreflowClient
connected to a reconciler as the driver connects it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from coretraffic.reconcile.reconciler import Reconciler
from coretraffic.sources.coreflow import CoreflowClient
from coretraffic.sources.coreflow.handler import make_update_routing_handler
from coretraffic.sources.intake import Intake
from tests.support import paths
from tests.support.caddy import OneCaddy

PEER_DIR = paths.PEER
STDOUT_LIMIT = 64 * 1024 * 1024


class PeerDied(RuntimeError):
    """The Node peer exited while a test was talking to it."""


class Peer:
    """A running `tests/peer/server.js`: a real TypedSocket server driven over stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.port = 0
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._stderr: deque[str] = deque(maxlen=60)
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    @classmethod
    async def start(cls, port: int = 0, *options: str) -> Peer:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not on PATH; the Coreflow interop tests need Node.js >= 18")
        if not (PEER_DIR / "node_modules" / "@apiglobal" / "typedsocket").is_dir():
            pytest.fail("the test peer's packages are missing: run `npm ci --prefix tests/peer`")
        return await cls.spawn([node, str(PEER_DIR / "server.js"), "--port", str(port), *options])

    @classmethod
    async def spawn(cls, argv: list[str]) -> Peer:
        """The peer run by `argv`, which ends in server.js's own: `node server.js ...` here, or a container
        engine's `run -i ... node server.js ...` (tests/engines), whose stdin and stdout are the peer's."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=PEER_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STDOUT_LIMIT,
        )
        peer = cls(process)
        try:
            async with asyncio.timeout(30):
                peer.port = await peer._listening
        except BaseException:
            await peer.close()
            raise
        return peer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    async def command(self, cmd: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self.process.stdin.write(json.dumps({"id": self._next_id, "cmd": cmd, **fields}).encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(timeout):
            return await future

    async def call(self, method: str, request: Any, *, wait_s: float = 5, timeout_s: float = 20) -> dict[str, Any]:
        """Fire a typed request at the connection tagged "coretraffic", as Coreflow does."""
        return await self.command(
            "call",
            timeout=wait_s + timeout_s + 5,
            method=method,
            request=request,
            waitMs=int(wait_s * 1000),
            timeoutMs=int(timeout_s * 1000),
        )

    async def answers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.command("answers"))["answers"]
        return result

    async def status(self, until_tagged: bool | None = None, wait_s: float = 5) -> dict[str, Any]:
        """The peer's connections; with until_tagged, first wait (bounded) for the tag to (dis)appear."""
        if until_tagged is None:
            return await self.command("status")
        return await self.command("status", timeout=wait_s + 10, untilTagged=until_tagged, waitMs=int(wait_s * 1000))

    async def wait_pongs(self, count: int, wait_s: float = 5) -> int:
        pongs: int = (await self.command("waitPongs", count=count, waitMs=int(wait_s * 1000)))["pongs"]
        return pongs

    async def stop(self) -> None:
        """Polite stop, as when Coreflow shuts down: clients get 41, then the process exits."""
        await self.command("stop")
        async with asyncio.timeout(10):
            await self.process.wait()

    async def kill(self) -> None:
        """Abrupt death: no 41, the kernel closes the sockets."""
        self.process.kill()
        async with asyncio.timeout(10):
            await self.process.wait()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.resume()
            self.process.kill()
            await self.process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                self._stderr.append(f"(stdout) {line.decode(errors='replace').rstrip()}")
                continue
            if message.get("event") == "listening" and not self._listening.done():
                self._listening.set_result(int(message["port"]))
            future = self._pending.pop(message.get("id"), None)
            if future is None or future.done():
                continue
            if "error" in message:
                future.set_exception(RuntimeError(f"peer command failed: {message['error']}"))
            else:
                future.set_result(message["result"])
        await self.process.wait()
        died = PeerDied(f"peer exited with {self.process.returncode}; stderr:\n{self.stderr_tail()}")
        waiters: list[asyncio.Future[Any]] = [self._listening, *self._pending.values()]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(died)

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())


class Watch:
    """Wakes waiters whenever the client logs or changes connection state, so tests wait on conditions."""

    def __init__(self) -> None:
        self.changes: list[bool] = []
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def on_connection_change(self, connected: bool) -> None:
        self.changes.append(connected)
        self.notify()

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.add(waiter)
                try:
                    await waiter
                finally:
                    self._waiters.discard(waiter)


class _NotifyingHandler(logging.Handler):
    def __init__(self, watch: Watch) -> None:
        super().__init__(logging.DEBUG)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        self._watch.notify()


class StubHandler:
    """Stands in for the reconciler: records each request, then replies (or raises) as configured."""

    def __init__(self, watch: Watch) -> None:
        self._watch = watch
        self.requests: list[Any] = []
        self.reply: Callable[[Any], dict[str, Any]] = lambda _request: {"status": "ok", "errorText": ""}
        self.raises: Exception | None = None
        self.gate: asyncio.Event | None = None  # when set, each call waits for it before replying

    async def __call__(self, request: Any) -> dict[str, Any]:
        self.requests.append(request)
        self._watch.notify()
        if self.gate is not None:
            async with asyncio.timeout(20):
                await self.gate.wait()
        if self.raises is not None:
            raise self.raises
        return self.reply(request)


@contextlib.asynccontextmanager
async def running_client(url: str, handler: StubHandler, watch: Watch) -> AsyncIterator[CoreflowClient]:
    """A CoreflowClient for `url` with `handler`, run for the block; its state changes and log lines wake `watch`."""
    client = CoreflowClient(url, handler, on_connection_change=watch.on_connection_change)
    notifier = _NotifyingHandler(watch)
    logger = logging.getLogger("coretraffic.coreflow")
    level = logger.level
    logger.addHandler(notifier)
    logger.setLevel(logging.DEBUG)
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
        logger.removeHandler(notifier)
        logger.setLevel(level)


# -- the driver's side: a client wired to a reconciler ----------------------------------------------------------

OK = {"outcome": "response", "response": {"status": "ok", "errorText": ""}}


@contextlib.asynccontextmanager
async def connected(
    peer: Peer, reconciler: Reconciler, deadline_s: float = 10.0, *, intake: Intake | None = None
) -> AsyncIterator[CoreflowClient]:
    """A CoreflowClient feeding `reconciler` through `intake` (a new one by default), tagged at the peer."""
    intake = intake if intake is not None else Intake(OneCaddy(reconciler))
    client = CoreflowClient(peer.url, make_update_routing_handler(intake, deadline_s))
    task = asyncio.create_task(client.run())
    try:
        await peer.status(until_tagged=True, wait_s=10)
        yield client
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def update(configs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"reverseConfigs": configs}
