"""Wire format of the Coreflow link: Engine.IO v4 / Socket.IO v5 packets and TypedRequest answers.

Pure functions only. `session` feeds every received WebSocket text message through `decode` and builds
every frame it sends with the `encode_*` functions; this is the part of the loop that turns Coreflow's
`updateRouting` pushes into calls and the handler's results back into answers that fit Coreflow's limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coretraffic.errors import FramingError

# Engine.IO packet types (first character of a WebSocket message).
_EIO_OPEN = "0"
_EIO_CLOSE = "1"
_EIO_PING = "2"
_EIO_PONG = "3"
_EIO_MESSAGE = "4"

# Socket.IO packet types (first character after the Engine.IO "4").
_SIO_CONNECT = "0"
_SIO_DISCONNECT = "1"
_SIO_EVENT = "2"
_SIO_CONNECT_ERROR = "4"

DEFAULT_NAMESPACE = "/"

# Engine.IO defaults, used when the OPEN packet leaves a limit out.
_DEFAULT_PING_INTERVAL_MS = 25_000
_DEFAULT_PING_TIMEOUT_MS = 20_000
DEFAULT_MAX_PAYLOAD = 1_000_000

# TypeScript's TypedSocket routes every typed request through this one smartsocket function.
PROCESS_MESSAGE = "processMessage"
NO_METHOD_ERROR: dict[str, Any] = {
    "text": "There is no available method for this call on the server side",
    "data": {},
}
_TRUNCATION_MARK = " [truncated]"
_TOO_LARGE_RESPONSE: dict[str, Any] = {
    "status": "error",
    "errorText": "the answer exceeded Coreflow's maxPayload and was replaced",
}


@dataclass(frozen=True)
class Open:
    """Engine.IO OPEN: the server's session id and limits (intervals in seconds)."""

    sid: str
    ping_interval: float
    ping_timeout: float
    max_payload: int


@dataclass(frozen=True)
class Close:
    """Engine.IO CLOSE."""


@dataclass(frozen=True)
class Ping:
    """Engine.IO PING; `data` must be echoed in the PONG."""

    data: str


@dataclass(frozen=True)
class Connect:
    """Socket.IO CONNECT acknowledgement for a namespace."""

    namespace: str


@dataclass(frozen=True)
class ConnectError:
    """Socket.IO CONNECT_ERROR: the server refused the namespace."""

    namespace: str


@dataclass(frozen=True)
class Disconnect:
    """Socket.IO DISCONNECT: the server ends the namespace session."""

    namespace: str


@dataclass(frozen=True)
class Event:
    """Socket.IO EVENT: `name` with its JSON arguments."""

    namespace: str
    name: str
    args: list[Any]


@dataclass(frozen=True)
class Other:
    """A packet this client has no use for (pong, upgrade, noop, ack, binary); `kind` names it."""

    kind: str


Packet = Open | Close | Ping | Connect | ConnectError | Disconnect | Event | Other


def decode(message: str) -> Packet:
    """Decode one WebSocket text message (one Engine.IO packet; websocket transport never batches)."""
    if not message:
        raise FramingError("empty message")
    kind, body = message[0], message[1:]
    if kind == _EIO_OPEN:
        return _decode_open(body)
    if kind == _EIO_CLOSE:
        return Close()
    if kind == _EIO_PING:
        return Ping(body)
    if kind == _EIO_MESSAGE:
        return _decode_socketio(body)
    return Other(f"engine.io {kind}")


def _decode_open(body: str) -> Open:
    data = _loads(body)
    if not isinstance(data, dict):
        raise FramingError("OPEN payload is not an object")
    try:
        return Open(
            sid=str(data.get("sid", "")),
            ping_interval=float(data.get("pingInterval", _DEFAULT_PING_INTERVAL_MS)) / 1000,
            ping_timeout=float(data.get("pingTimeout", _DEFAULT_PING_TIMEOUT_MS)) / 1000,
            max_payload=int(data.get("maxPayload", DEFAULT_MAX_PAYLOAD)),
        )
    except (TypeError, ValueError) as exc:
        raise FramingError("OPEN limits are not numbers") from exc


def _decode_socketio(body: str) -> Packet:
    if not body:
        raise FramingError("empty Socket.IO packet")
    kind, rest = body[0], body[1:]
    namespace = DEFAULT_NAMESPACE
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    # An ack id may sit between namespace and data; smartsocket never asks for acks, so it is skipped.
    rest = rest.lstrip("0123456789")
    if kind == _SIO_CONNECT:
        return Connect(namespace)
    if kind == _SIO_DISCONNECT:
        return Disconnect(namespace)
    if kind == _SIO_CONNECT_ERROR:
        return ConnectError(namespace)
    if kind == _SIO_EVENT:
        data = _loads(rest)
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise FramingError("EVENT payload is not [name, ...args]")
        return Event(namespace, data[0], data[1:])
    return Other(f"socket.io {kind}")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser goes
        raise FramingError("payload is not JSON") from exc


def _dumps(value: Any) -> str:
    # ASCII-only output makes len(frame) equal its size in bytes, the unit of maxPayload; NaN is refused
    # because JavaScript's JSON.parse cannot read it.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def encode_pong(data: str) -> str:
    """Engine.IO PONG echoing the PING's data."""
    return _EIO_PONG + data


def encode_connect() -> str:
    """Socket.IO CONNECT to the default namespace."""
    return _EIO_MESSAGE + _SIO_CONNECT


def encode_disconnect() -> str:
    """Socket.IO DISCONNECT from the default namespace (the polite goodbye)."""
    return _EIO_MESSAGE + _SIO_DISCONNECT


def encode_event(name: str, *args: Any) -> str:
    """Socket.IO EVENT on the default namespace. Raises ValueError/TypeError for non-JSON arguments."""
    return _EIO_MESSAGE + _SIO_EVENT + _dumps([name, *args])


@dataclass(frozen=True)
class FunctionCall:
    """A smartsocket `function` event: `envelope` is the TypedRequest ({} if it was not an object)."""

    short_id: str
    func_name: Any
    envelope: dict[str, Any]


def parse_function_call(arg: Any) -> FunctionCall | None:
    """Read a `function` event argument; None if it has no usable shortId (then it cannot be answered)."""
    if not isinstance(arg, dict):
        return None
    short_id = arg.get("shortId")
    if not isinstance(short_id, str) or not short_id:
        return None
    call_data = arg.get("funcCallData")
    if not isinstance(call_data, dict):
        call_data = {}
    envelope = call_data.get("funcDataArg")
    return FunctionCall(short_id, call_data.get("funcName"), envelope if isinstance(envelope, dict) else {})


def answer_envelope(
    envelope: dict[str, Any], *, response: Any = None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The request envelope turned into its answer.

    The bulky `request` is replaced by {} because Coreflow reads only response/error/retry, and an echoed
    routing table would exceed its 1 MB maxPayload. `correlation.phase` becomes "response".
    """
    answer = {**envelope, "request": {}, "response": response}
    correlation = envelope.get("correlation")
    answer["correlation"] = (
        {**correlation, "phase": "response"} if isinstance(correlation, dict) else {"phase": "response"}
    )
    if error is not None:
        answer["error"] = error
    return answer


def encode_function_response(call: FunctionCall, answer: dict[str, Any], max_bytes: int) -> str | None:
    """The `functionResponse` frame for `call`, at most `max_bytes` long, or None if nothing fits.

    If the answer is too big, its `response.errorText` is shortened; if that is not enough, the response
    is replaced by a short error. Raises ValueError/TypeError if the answer is not JSON.
    """
    frame = _function_response(call, answer)
    if len(frame) <= max_bytes:
        return frame
    response = answer.get("response")
    if isinstance(response, dict) and isinstance(response.get("errorText"), str):
        text: str = response["errorText"]
        # Every dropped character saves at least one byte of JSON, so one cut is enough.
        keep = len(text) - (len(frame) - max_bytes) - len(_TRUNCATION_MARK)
        if keep > 0:
            shortened = {**response, "errorText": text[:keep] + _TRUNCATION_MARK}
            frame = _function_response(call, {**answer, "response": shortened})
            if len(frame) <= max_bytes:
                return frame
    frame = _function_response(call, {**answer, "response": _TOO_LARGE_RESPONSE})
    return frame if len(frame) <= max_bytes else None


def _function_response(call: FunctionCall, answer: dict[str, Any]) -> str:
    return encode_event(
        "functionResponse",
        {"funcCallData": {"funcName": call.func_name, "funcDataArg": answer}, "shortId": call.short_id},
    )
