"""Route changes under real traffic in a network namespace each test makes for itself.

The scenario (`tests/support/route_changes.py`) runs in a child under `unshare --net` with loopback up and
`net.ipv4.tcp_migrate_req=1`: a spawned Caddy driven by the reconciler, an echo upstream, and real clients over
TLS with SNI (20 `websockets` WebSockets, new-connection clients over HTTP/1.1 and HTTP/2, keep-alive clients
that retry as browsers do) through 40 route changes. Needs root to make the namespace: skipped elsewhere with
the reason, a failure when CI=true.

What must hold: every WebSocket still echoes; no request on a kept connection fails after the browser's one
retry; a new connection loses a request only in the one way a stock Caddy reload loses it (docs/caddy.md,
"Reloads and new connections"): HTTP/1.1 closed without a response, HTTP/2 by the old server's graceful GOAWAY
(which httpx's HTTP/2 client turns into an error both when the request was not processed and when the server
goes on to answer it; see `benchmarks.continuity.failure_kind`). No reset (the sysctl hands queued connections
over), no timeout, no HTTP error.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.netns import netns_problem
from tests.support.route_changes import RouteChanges, run_in_own_netns

pytestmark = pytest.mark.timeout(360)

CHANGES = 40
WEBSOCKETS = 20
# The only losses a stock Caddy reload causes on a new connection, by protocol (see the module docstring).
UNPROCESSED = {
    "h1": {"RemoteProtocolError: without sending a response"},
    "h2": {
        "GOAWAY before the first request (unprocessed)",
        "GOAWAY after the request was accepted (httpcore gives up on it)",
    },
}


@pytest.fixture(scope="module")
def figures() -> RouteChanges:
    problem = netns_problem()
    if problem:
        assert os.environ.get("CI") != "true", f"CI runs as root: {problem}"
        pytest.skip(problem)
    return run_in_own_netns(CHANGES, WEBSOCKETS, workers=4, tcp_migrate_req=1, timeout=300)


def test_websockets_stay_open_and_echo_across_40_route_changes(figures: RouteChanges) -> None:
    print(f"\nroute changes in a network namespace: {figures}")
    assert figures.tcp_migrate_req == "on"  # as the driver reads it in the namespace Caddy listens in
    assert figures.loads == CHANGES  # each change one reload: the WebSockets really lived through 40
    assert (figures.websockets_opened, figures.websockets_echoing) == (WEBSOCKETS, WEBSOCKETS)


def test_keep_alive_clients_that_retry_as_browsers_do_lose_nothing_on_kept_connections(figures: RouteChanges) -> None:
    assert figures.keep_alive_ok >= 20 * CHANGES // 10, "too little traffic to prove anything"
    assert figures.keep_alive_failures == {}
    # A request that had to open a connection meets what the new-connection clients meet, and only that.
    assert all("without sending a response" in kind for kind in figures.keep_alive_fresh_failures)


def test_new_connections_lose_requests_only_unprocessed_never_reset_or_timed_out(figures: RouteChanges) -> None:
    for protocol, unprocessed in UNPROCESSED.items():
        assert figures.new_connection_ok[protocol] >= CHANGES, f"{protocol}: too few requests overlapped the changes"
        assert set(figures.new_connection_failures[protocol]) <= unprocessed, figures.new_connection_failures
