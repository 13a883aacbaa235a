"""The pure wire format of the Coreflow link: decoding what Coreflow sends, encoding what we answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coretraffic.errors import FramingError
from coretraffic.sources.coreflow import framing
from coretraffic.sources.coreflow.framing import (
    Close,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    FunctionCall,
    Open,
    Other,
    Ping,
)


def test_decode_open_reads_limits_in_seconds_and_ignores_unknown_keys() -> None:
    message = (
        '0{"sid":"_2KNGuspn7IgGEjUAAAA","upgrades":[],"pingInterval":25000,"pingTimeout":20000,'
        '"maxPayload":1000000,"new":1}'
    )
    assert framing.decode(message) == Open("_2KNGuspn7IgGEjUAAAA", 25.0, 20.0, 1_000_000)


def test_decode_open_defaults_missing_limits() -> None:
    assert framing.decode('0{"sid":"x"}') == Open("x", 25.0, 20.0, framing.DEFAULT_MAX_PAYLOAD)


@pytest.mark.parametrize("message", ["0[]", "0{", '0{"pingInterval":"soon"}'])
def test_decode_bad_open(message: str) -> None:
    with pytest.raises(FramingError):
        framing.decode(message)


@pytest.mark.parametrize(
    ("message", "packet"),
    [
        ("1", Close()),
        ("2", Ping("")),
        ("2probe", Ping("probe")),
        ("6", Other("engine.io 6")),
        ('40{"sid":"aLn31m_njoAFsT4PAAAB","pid":"p"}', Connect("/")),
        ("41", Disconnect("/")),
        ('44{"message":"Not authorized"}', ConnectError("/")),
        ('42["authenticated"]', Event("/", "authenticated", [])),
        ('42["requestAuth",{"serverAlias":"s"}]', Event("/", "requestAuth", [{"serverAlias": "s"}])),
        ('4212["withAck",1]', Event("/", "withAck", [1])),
        ('42/admin,["x",{}]', Event("/admin", "x", [{}])),
        ("40/admin,", Connect("/admin")),
        ('43["ack"]', Other("socket.io 3")),
    ],
)
def test_decode(message: str, packet: framing.Packet) -> None:
    assert framing.decode(message) == packet


@pytest.mark.parametrize("message", ["", "4", "42", "42{}", "42[]", "42[1]", '42["x"'])
def test_decode_malformed(message: str) -> None:
    with pytest.raises(FramingError):
        framing.decode(message)


def test_encoders() -> None:
    assert framing.encode_pong("") == "3"
    assert framing.encode_pong("probe") == "3probe"
    assert framing.encode_connect() == "40"
    assert framing.encode_disconnect() == "41"
    assert framing.encode_event("dataAuth", {"alias": "coretraffic"}) == '42["dataAuth",{"alias":"coretraffic"}]'
    assert framing.encode_event("ping") == '42["ping"]'


def test_encode_event_is_ascii_so_length_is_bytes() -> None:
    frame = framing.encode_event("x", {"text": "grüße \U0001f600"})
    assert frame.isascii()
    assert json.loads(frame[2:]) == ["x", {"text": "grüße \U0001f600"}]


def test_encode_event_refuses_nan() -> None:
    with pytest.raises(ValueError):
        framing.encode_event("x", float("nan"))


ENVELOPE: dict[str, Any] = {
    "method": "updateRouting",
    "request": {"reverseConfigs": [{"hostName": "app.example.com", "privateKey": "secret"}]},
    "response": None,
    "correlation": {"id": "uni_1f9a792dedb88be83be04a43", "phase": "request"},
}
CALL_ARG = {
    "funcCallData": {"funcDataArg": ENVELOPE, "funcName": "processMessage"},
    "shortId": "uni_0af0fffac2deed3c4d07c59c",
}


def test_parse_function_call() -> None:
    assert framing.parse_function_call(CALL_ARG) == FunctionCall(
        "uni_0af0fffac2deed3c4d07c59c", "processMessage", ENVELOPE
    )


def test_parse_function_call_tolerates_a_broken_envelope_but_not_a_missing_short_id() -> None:
    assert framing.parse_function_call({"shortId": "uni_1", "funcCallData": "x"}) == FunctionCall("uni_1", None, {})
    assert framing.parse_function_call({"shortId": "uni_1", "funcCallData": {"funcDataArg": [1]}}) == FunctionCall(
        "uni_1", None, {}
    )
    unanswerable: list[Any] = [None, [], {}, {"shortId": ""}, {"shortId": 7}]
    for arg in unanswerable:
        assert framing.parse_function_call(arg) is None


def test_answer_envelope_drops_request_and_flips_phase() -> None:
    answer = framing.answer_envelope(ENVELOPE, response={"status": "ok", "errorText": ""})
    assert answer == {
        "method": "updateRouting",
        "request": {},
        "response": {"status": "ok", "errorText": ""},
        "correlation": {"id": "uni_1f9a792dedb88be83be04a43", "phase": "response"},
    }
    assert ENVELOPE["correlation"]["phase"] == "request"  # the request is left alone


def test_answer_envelope_with_error_and_without_correlation() -> None:
    answer = framing.answer_envelope({"method": "nope"}, error=framing.NO_METHOD_ERROR)
    assert answer == {
        "method": "nope",
        "request": {},
        "response": None,
        "correlation": {"phase": "response"},
        "error": {"text": "There is no available method for this call on the server side", "data": {}},
    }


def _decoded_answer(frame: str) -> tuple[str, Any]:
    event = framing.decode(frame)
    assert isinstance(event, Event)
    assert event.name == "functionResponse"
    [arg] = event.args
    assert arg["funcCallData"]["funcName"] == "processMessage"
    return arg["shortId"], arg["funcCallData"]["funcDataArg"]


CALL = FunctionCall("uni_0af0fffac2deed3c4d07c59c", "processMessage", ENVELOPE)


def test_encode_function_response() -> None:
    answer = framing.answer_envelope(ENVELOPE, response={"status": "ok", "errorText": ""})
    frame = framing.encode_function_response(CALL, answer, 1_000_000)
    assert frame is not None
    assert _decoded_answer(frame) == ("uni_0af0fffac2deed3c4d07c59c", answer)


def test_encode_function_response_shortens_error_text_to_fit() -> None:
    text = "route app.example.com: bad certificate\n" * 1000
    answer = framing.answer_envelope(ENVELOPE, response={"status": "error", "errorText": text})
    limit = 2000
    frame = framing.encode_function_response(CALL, answer, limit)
    assert frame is not None
    assert len(frame.encode()) <= limit
    _, sent = _decoded_answer(frame)
    assert sent["response"]["status"] == "error"
    assert sent["response"]["errorText"].endswith(" [truncated]")
    assert text.startswith(sent["response"]["errorText"].removesuffix(" [truncated]"))
    assert sent["correlation"] == {"id": "uni_1f9a792dedb88be83be04a43", "phase": "response"}


def test_encode_function_response_replaces_a_response_that_cannot_be_shortened() -> None:
    answer = framing.answer_envelope(ENVELOPE, response={"status": "ok", "errorText": "", "blob": "x" * 5000})
    frame = framing.encode_function_response(CALL, answer, 1000)
    assert frame is not None
    assert len(frame) <= 1000
    _, sent = _decoded_answer(frame)
    assert sent["response"]["status"] == "error"
    assert "maxPayload" in sent["response"]["errorText"]


def test_encode_function_response_gives_up_when_nothing_fits() -> None:
    answer = framing.answer_envelope(ENVELOPE, response={"status": "ok", "errorText": ""})
    assert framing.encode_function_response(CALL, answer, 100) is None


def test_encode_function_response_rejects_non_json() -> None:
    answer = framing.answer_envelope(ENVELOPE, response={"status": "ok", "when": object()})
    with pytest.raises(TypeError):
        framing.encode_function_response(CALL, answer, 1_000_000)
