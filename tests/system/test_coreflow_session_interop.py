"""CoreflowClient against the real TypedSocket server from npm (tests/peer): the Coreflow end of the loop.

Every wait is on a condition with a deadline; every test has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from coretraffic.sources.coreflow import CoreflowClient
from coretraffic.sources.coreflow.framing import NO_METHOD_ERROR
from coretraffic.sources.coreflow.session import websocket_url
from tests.support.coreflow import Peer, StubHandler, Watch

pytestmark = pytest.mark.timeout(60)

RunClient = Callable[[str], contextlib.AbstractAsyncContextManager[CoreflowClient]]
StartPeer = Callable[..., Awaitable[Peer]]

OK = {"status": "ok", "errorText": ""}


def routes(count: int, pem_size: int = 1500) -> dict[str, Any]:
    """An updateRouting request shaped like Coreflow's: `count` hosts with PEM-sized key and cert."""
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(["A" * 64] * (pem_size // 65)) + "\n-----END-----\n"
    return {
        "reverseConfigs": [
            {
                "hostName": f"app{i}.example.com",
                "destinationIps": ["10.0.0.11", "10.0.0.12"],
                "destinationPorts": [8080, 8080],
                "privateKey": pem,
                "publicKey": pem.replace("PRIVATE KEY", "CERTIFICATE"),
            }
            for i in range(count)
        ]
    }


async def test_update_reaches_handler_and_reply_reaches_peer(
    peer: Peer, run_client: RunClient, stub: StubHandler, watch: Watch
) -> None:
    async with run_client(peer.url) as client:
        request = routes(2)
        result = await peer.call("updateRouting", request)

        assert result == {"outcome": "response", "response": OK}
        assert stub.requests == [request]
        assert client.connected
        assert watch.changes == [True]
        [answer] = await peer.answers()
        assert answer["phase"] == "response"
        assert answer["method"] == "updateRouting"
        assert answer["requestBytes"] == len("{}")
        status = await peer.status()
        assert [(c["alias"], c["tags"]) for c in status["connections"]] == [("coretraffic", ["coretraffic"])]


async def test_six_megabyte_update_is_received_and_acknowledged(
    peer: Peer, run_client: RunClient, stub: StubHandler
) -> None:
    request = routes(2000, pem_size=1450)
    stub.reply = lambda got: {"status": "ok", "errorText": f"{len(got['reverseConfigs'])} routes"}
    async with run_client(peer.url):
        result = await peer.call("updateRouting", request)

    assert result == {"outcome": "response", "response": {"status": "ok", "errorText": "2000 routes"}}
    assert stub.requests == [request]
    [answer] = await peer.answers()
    assert answer["requestBytes"] == len("{}")  # not echoed: a 6 MB echo would break the 1 MB maxPayload


async def test_concurrent_calls_are_handled_in_parallel_and_each_answered_once(
    peer: Peer, run_client: RunClient, stub: StubHandler, watch: Watch
) -> None:
    calls = 5
    # No reply until all calls are in the handler at once: proves they run concurrently.
    stub.gate = asyncio.Event()
    stub.reply = lambda got: {"status": "ok", "errorText": got["name"]}
    async with run_client(peer.url):
        results = asyncio.gather(*(peer.call("updateRouting", {"name": f"call-{i}"}) for i in range(calls)))
        await watch.wait_for(lambda: len(stub.requests) == calls, timeout=10)
        stub.gate.set()
        done = await results

        assert [r["response"]["errorText"] for r in done] == [f"call-{i}" for i in range(calls)]
        answers = await peer.answers()
        assert len(answers) == calls
        assert len({a["shortId"] for a in answers}) == calls
        assert (await peer.status())["tagged"]  # the server survived: a repeated shortId would crash it


async def test_unknown_method_gets_the_typed_error(peer: Peer, run_client: RunClient, stub: StubHandler) -> None:
    async with run_client(peer.url):
        result = await peer.call("deleteEverything", {"x": 1})

    assert result == {"outcome": "typedError", "text": NO_METHOD_ERROR["text"], "data": {}}
    assert stub.requests == []


async def test_handler_exception_becomes_error_status(peer: Peer, run_client: RunClient, stub: StubHandler) -> None:
    stub.raises = RuntimeError("caddy rejected the config")
    async with run_client(peer.url) as client:
        result = await peer.call("updateRouting", routes(1))
        assert result == {
            "outcome": "response",
            "response": {"status": "error", "errorText": "caddy rejected the config"},
        }

        stub.raises = None
        assert (await peer.call("updateRouting", routes(1)))["response"] == OK
        assert client.reconnects == 0


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_retags_after_peer_restart_on_same_port(
    how: str, peers: StartPeer, run_client: RunClient, stub: StubHandler, watch: Watch
) -> None:
    first = await peers()
    async with run_client(first.url) as client:
        assert (await first.call("updateRouting", routes(1)))["response"] == OK
        await (first.stop() if how == "stop" else first.kill())
        await watch.wait_for(lambda: not client.connected, timeout=5)

        second = await peers(first.port)
        back = time.monotonic()
        result = await second.call("updateRouting", {"generation": 2}, wait_s=3)
        elapsed = time.monotonic() - back

        assert result == {"outcome": "response", "response": OK}
        assert stub.requests[-1] == {"generation": 2}
        assert elapsed < 3, f"update arrived {elapsed:.2f} s after the peer was back"
        assert client.connected
        assert client.reconnects >= 1
        assert watch.changes[:2] == [True, False]


async def test_tags_after_peer_was_down_at_first_connect(
    free_port: int, peers: StartPeer, run_client: RunClient, stub: StubHandler, watch: Watch
) -> None:
    async with run_client(f"http://127.0.0.1:{free_port}") as client:
        # The reference client never tags in this case; this one must.
        await watch.wait_for(lambda: client.reconnects >= 1, timeout=5)
        assert not client.connected

        peer = await peers(free_port)
        result = await peer.call("updateRouting", routes(1), wait_s=5)

        assert result == {"outcome": "response", "response": OK}
        assert client.connected


async def test_pings_are_answered_while_an_update_is_being_applied(
    peers: StartPeer, run_client: RunClient, stub: StubHandler, watch: Watch
) -> None:
    # 300 ms + 300 ms heartbeat: a client that stopped answering pings would be dropped within 0.6 s.
    peer = await peers(0, "--ping-interval-ms", "300", "--ping-timeout-ms", "300")
    stub.gate = asyncio.Event()
    async with run_client(peer.url) as client:
        pending = asyncio.ensure_future(peer.call("updateRouting", routes(1)))
        await watch.wait_for(lambda: len(stub.requests) == 1, timeout=10)
        pongs = await peer.wait_pongs(5, wait_s=10)
        assert pongs >= 5
        stub.gate.set()

        assert (await pending)["response"] == OK
        assert watch.changes == [True]
        assert client.reconnects == 0


async def test_reconnects_when_pings_stop(
    peers: StartPeer, run_client: RunClient, stub: StubHandler, watch: Watch
) -> None:
    peer = await peers(0, "--ping-interval-ms", "300", "--ping-timeout-ms", "300")
    async with run_client(peer.url) as client:
        await watch.wait_for(lambda: client.connected, timeout=5)
        peer.pause()  # the TCP connection stays up, but no more pings come
        try:
            await watch.wait_for(lambda: not client.connected, timeout=5)
        finally:
            peer.resume()
        # Once the client is tagged again, the peer has also dropped the stale connection (it handles
        # that close before the new handshake's round trips); firing earlier could pick the stale one.
        await watch.wait_for(lambda: client.connected, timeout=15)

        result = await peer.call("updateRouting", routes(1))
        assert result == {"outcome": "response", "response": OK}
        assert client.reconnects >= 1


async def test_cancelling_run_disconnects_politely(peer: Peer, run_client: RunClient, watch: Watch) -> None:
    async with run_client(peer.url) as client:
        await watch.wait_for(lambda: client.connected, timeout=5)
    assert not client.connected
    assert watch.changes == [True, False]
    status = await peer.status(until_tagged=False)
    assert status["connections"] == []
    assert status["disconnectReasons"] == ["client namespace disconnect"]  # we sent 41


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://coreflow:3000", "ws://coreflow:3000/socket.io/?EIO=4&transport=websocket"),
        ("https://coreflow.example.com:8443/", "wss://coreflow.example.com:8443/socket.io/?EIO=4&transport=websocket"),
        ("http://coreflow", "ws://coreflow:3000/socket.io/?EIO=4&transport=websocket"),
        ("ws://[::1]:3000", "ws://[::1]:3000/socket.io/?EIO=4&transport=websocket"),
    ],
)
def test_websocket_url(base: str, expected: str) -> None:
    assert websocket_url(base) == expected


@pytest.mark.parametrize("base", ["coreflow:3000", "ftp://coreflow", "http://coreflow:3000/ns", "http://"])
def test_websocket_url_rejects(base: str) -> None:
    with pytest.raises(ValueError):
        websocket_url(base)


def test_empty_alias_is_refused() -> None:
    async def handler(_request: Any) -> dict[str, Any]:
        return OK

    with pytest.raises(ValueError):
        CoreflowClient("http://coreflow:3000", handler, alias="")
