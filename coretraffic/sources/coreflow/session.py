"""The Coreflow connection: where routing updates enter the loop.

`CoreflowClient.run` keeps one TypedSocket (smartsocket over Socket.IO) connection to Coreflow alive:
it handshakes, tags itself "coretraffic" so Coreflow can find it, answers heartbeats, hands every
`updateRouting` request to the routing handler (which feeds the fleet) and sends the handler's result back.
Any loss leads to a fresh connection, handshake and tag, with capped, jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from coretraffic.errors import ConnectionLost, FramingError
from coretraffic.settings import parse_coreflow_url
from coretraffic.sources.coreflow import framing

logger = logging.getLogger("coretraffic.coreflow")

RoutingHandler = Callable[[Any], Awaitable[dict[str, Any]]]

UPDATE_ROUTING = "updateRouting"
# The reference client gives up on a connection attempt after 5 s; here that bounds everything up to
# the confirmed tag, so a connection can never stay untagged (and so invisible to Coreflow).
HANDSHAKE_TIMEOUT_S = 5.0
# A session that stayed tagged this long was healthy: the next outage starts the backoff afresh.
STABLE_SESSION_S = 10.0
# A dead link cannot complete the closing handshake; do not hold up the reconnect for long.
CLOSE_TIMEOUT_S = 1.0
# Full-jitter backoff: the n-th retry waits uniform(0, min(2.5, 0.5 * 2**(n-1))) seconds, so the first
# retry comes within 0.5 s and none waits longer than 2.5 s.
_BACKOFF = tenacity.wait_random_exponential(multiplier=0.5, max=2.5)


class _StableSessionEnded(Exception):
    """A long, healthy session ended: leave the current backoff sequence and start a new one."""


def websocket_url(base_url: str) -> str:
    """`http://coreflow:3000` -> `ws://coreflow:3000/socket.io/?EIO=4&transport=websocket`."""
    scheme, host, port = parse_coreflow_url(base_url)
    return f"{scheme}://{host}:{port}/socket.io/?EIO=4&transport=websocket"


class _Link:
    """One WebSocket connection and the state that must not outlive it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.open = True
        self.max_payload = framing.DEFAULT_MAX_PAYLOAD  # until OPEN says otherwise
        self.tag_store: dict[str, Any] = {}
        self.tagged_at: float | None = None
        # shortIds taken on this connection: each is answered at most once, and only here.
        self.short_ids: set[str] = set()

    async def send(self, frame: str, what: str) -> None:
        size = len(frame.encode())
        if size > self.max_payload:
            # The server would kill the connection (WS close 1009) for an oversize frame.
            logger.error("not sending %s: %d bytes exceed Coreflow's maxPayload %d", what, size, self.max_payload)
            return
        await self.ws.send(frame)


class CoreflowClient:
    """Keeps CoreTraffic connected to Coreflow and answers its `updateRouting` calls."""

    def __init__(
        self,
        url: str,
        handle_update_routing: RoutingHandler,
        *,
        alias: str = "coretraffic",
        tag: str = "coretraffic",
        on_connection_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not alias:
            # An empty alias makes the smartsocket server reject a promise nobody catches: Coreflow dies.
            raise ValueError("alias must not be empty")
        if not tag:
            raise ValueError("tag must not be empty")
        self._ws_url = websocket_url(url)
        self._handle_update_routing = handle_update_routing
        self._alias = alias
        self._tag = tag
        self._tag_entry = {"id": tag, "payload": {}}
        self._on_connection_change = on_connection_change
        self._connected = False
        self._calls: set[asyncio.Task[None]] = set()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """True while the connection is tagged (Coreflow can find it) and receiving."""
        return self._connected

    async def run(self) -> None:
        """Stay connected until cancelled; cancellation says goodbye (41) and closes the WebSocket."""
        first_attempt = True
        try:
            while True:
                try:
                    async for attempt in tenacity.AsyncRetrying(
                        wait=_BACKOFF,
                        retry=tenacity.retry_if_exception(_worth_retrying),
                        before_sleep=_log_retry,
                        reraise=True,
                    ):
                        with attempt:
                            if not first_attempt:
                                self.reconnects += 1
                            first_attempt = False
                            await self._session()
                except _StableSessionEnded as exc:
                    logger.warning("Coreflow connection lost (%s); reconnecting", exc)
        finally:
            for task in self._calls:
                task.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if self._on_connection_change is not None:
            try:
                self._on_connection_change(connected)
            except Exception:
                logger.exception("on_connection_change callback failed")

    async def _session(self) -> None:
        """One connection from dial to loss; always ends by raising."""
        handshake_deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        logger.debug("connecting to Coreflow at %s", self._ws_url)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                # Routing tables arrive as one multi-megabyte message; Engine.IO has its own heartbeat.
                ws = await connect(
                    self._ws_url,
                    max_size=None,
                    ping_interval=None,
                    close_timeout=CLOSE_TIMEOUT_S,
                    open_timeout=None,
                    proxy=None,
                )
        except TimeoutError as exc:
            raise ConnectionLost("connecting timed out") from exc
        link = _Link(ws)
        try:
            await self._receive(link, handshake_deadline)
        except asyncio.CancelledError:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await ws.send(framing.encode_disconnect())
            except (ConnectionClosed, TimeoutError):
                pass
            raise
        except Exception as exc:
            if link.tagged_at is not None and time.monotonic() - link.tagged_at >= STABLE_SESSION_S:
                raise _StableSessionEnded(str(exc)) from exc
            raise
        finally:
            link.open = False
            self._set_connected(False)
            await ws.close()

    async def _receive(self, link: _Link, handshake_deadline: float) -> None:
        heartbeat_deadline: float | None = None  # set by OPEN, pushed back by every ping
        heartbeat_window = 0.0
        while True:
            deadline = heartbeat_deadline
            if link.tagged_at is None:
                deadline = min(handshake_deadline, deadline or handshake_deadline)
            try:
                async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                    message = await link.ws.recv()
            except TimeoutError as exc:
                if link.tagged_at is None:
                    raise ConnectionLost(f"not tagged within {HANDSHAKE_TIMEOUT_S:g} s") from exc
                raise ConnectionLost(f"no ping from Coreflow for {heartbeat_window:g} s") from exc
            except ConnectionClosed as exc:
                raise ConnectionLost(f"WebSocket closed ({exc})") from exc
            if isinstance(message, bytes):
                logger.debug("ignoring a binary message of %d bytes", len(message))
                continue
            try:
                packet = framing.decode(message)
            except FramingError as exc:
                logger.warning("ignoring a malformed message of %d bytes: %s", len(message), exc)
                continue
            match packet:
                case framing.Open():
                    link.max_payload = packet.max_payload
                    heartbeat_window = packet.ping_interval + packet.ping_timeout
                    heartbeat_deadline = time.monotonic() + heartbeat_window
                    await link.send(framing.encode_connect(), "connect")
                case framing.Ping():
                    if heartbeat_deadline is not None:
                        heartbeat_deadline = time.monotonic() + heartbeat_window
                    await link.send(framing.encode_pong(packet.data), "pong")
                case framing.Close():
                    raise ConnectionLost("Coreflow closed the Engine.IO session")
                case framing.Disconnect(namespace=framing.DEFAULT_NAMESPACE):
                    raise ConnectionLost("Coreflow disconnected the Socket.IO session")
                case framing.ConnectError(namespace=framing.DEFAULT_NAMESPACE):
                    raise ConnectionLost("Coreflow refused the Socket.IO connect")
                case framing.Event(namespace=framing.DEFAULT_NAMESPACE):
                    await self._on_event(link, packet, len(message))
                case _:
                    logger.debug("ignoring %s", packet)

    async def _on_event(self, link: _Link, event: framing.Event, size: int) -> None:
        arg = event.args[0] if event.args else None
        match event.name:
            case "requestAuth":
                server_alias = arg.get("serverAlias") if isinstance(arg, dict) else None
                logger.info("Coreflow %s asks for authentication", server_alias)
                await link.send(framing.encode_event("dataAuth", {"alias": self._alias}), "dataAuth")
            case "authenticated":
                logger.debug("authenticated as %r", self._alias)
            case "serverFullyReactive":
                # Only now does the server listen for tag stores; an earlier one would be lost.
                link.tag_store = {self._tag: self._tag_entry}
                await link.send(framing.encode_event("updateTagStore", link.tag_store), "updateTagStore")
            case "updateTagStore":
                await self._on_tag_store(link, arg)
            case "function":
                self._dispatch(link, arg, size)
            case "forbidden":
                raise ConnectionLost("Coreflow answered forbidden")
            case _:
                logger.debug("ignoring event %r", event.name)

    async def _on_tag_store(self, link: _Link, store: Any) -> None:
        if not isinstance(store, dict):
            logger.warning("ignoring a tag store that is not an object")
            return
        if store != link.tag_store:
            # smartsocket's rule, the same on both sides: adopt a differing store and send it back; an
            # equal one is the echo that confirms ours and must not be answered, or the two sides loop.
            link.tag_store = store
            await link.send(framing.encode_event("updateTagStore", store), "updateTagStore")
        tagged = store.get(self._tag) == self._tag_entry
        if tagged and link.tagged_at is None:
            link.tagged_at = time.monotonic()
            logger.info("tagged %r at Coreflow; ready for routing updates", self._tag)
        self._set_connected(tagged)

    def _dispatch(self, link: _Link, arg: Any, size: int) -> None:
        call = framing.parse_function_call(arg)
        if call is None:
            logger.warning("ignoring a function call without a shortId (%d bytes)", size)
            return
        if call.short_id in link.short_ids:
            logger.warning("ignoring a repeated function call %s", call.short_id)
            return
        link.short_ids.add(call.short_id)
        logger.info(
            "function call %s: %s/%s, %d bytes",
            call.short_id,
            call.func_name,
            call.envelope.get("method"),
            size,
        )
        # Handled in its own task: applying routes may take long while pings must still be answered.
        task = asyncio.create_task(self._answer(link, call), name=f"coreflow-call-{call.short_id}")
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _answer(self, link: _Link, call: framing.FunctionCall) -> None:
        started = time.monotonic()
        method = call.envelope.get("method")
        if call.func_name != framing.PROCESS_MESSAGE or method != UPDATE_ROUTING:
            # Answer anyway: an unanswered call leaves Coreflow waiting for ever.
            logger.warning("no handler for %s/%s (call %s)", call.func_name, method, call.short_id)
            answer = framing.answer_envelope(call.envelope, error=framing.NO_METHOD_ERROR)
        else:
            answer = framing.answer_envelope(call.envelope, response=await self._routing_response(call))
        try:
            frame = framing.encode_function_response(call, answer, link.max_payload)
        except (TypeError, ValueError):
            logger.error("the handler's response to call %s is not JSON; answering with an error", call.short_id)
            error = {"status": "error", "errorText": "the routing handler returned a response that is not JSON"}
            frame = framing.encode_function_response(
                call, framing.answer_envelope(call.envelope, response=error), link.max_payload
            )
        if frame is None:
            logger.error(
                "no answer to call %s fits maxPayload %d; leaving it unanswered", call.short_id, link.max_payload
            )
            return
        if not link.open:
            # Never on another connection: an unknown shortId crashes the smartsocket server.
            logger.warning("connection of call %s is gone; dropping its answer", call.short_id)
            return
        try:
            await link.send(frame, f"answer to {call.short_id}")
        except ConnectionClosed:
            logger.warning("connection closed while answering call %s; answer dropped", call.short_id)
            return
        logger.info("answered call %s (%d bytes) after %.2f s", call.short_id, len(frame), time.monotonic() - started)

    async def _routing_response(self, call: framing.FunctionCall) -> Any:
        try:
            return await self._handle_update_routing(call.envelope.get("request"))
        except Exception as exc:
            # The handler owns its messages; they go to the log and to Coreflow as errorText.
            logger.exception("updateRouting handler failed on call %s", call.short_id)
            return {"status": "error", "errorText": str(exc) or type(exc).__name__}


def _worth_retrying(exc: BaseException) -> bool:
    # Any failure means reconnect; cancellation and the end of a stable session leave the retry loop.
    return isinstance(exc, Exception) and not isinstance(exc, _StableSessionEnded)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    # Coreflow may stay away for long: warn when an outage starts and now and then, not on every retry.
    level = logging.WARNING if state.attempt_number == 1 or state.attempt_number % 20 == 0 else logging.DEBUG
    logger.log(
        level,
        "Coreflow connection attempt %d failed (%s: %s); retrying in %.2f s",
        state.attempt_number,
        type(exc).__name__,
        exc,
        state.upcoming_sleep,
    )
