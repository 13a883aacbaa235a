"""The status server of a real `coretraffic run` (and a real Caddy, and the real Coreflow peer): health,
readiness, metrics, `/status` and the `coretraffic status` command, as an operator and a kubelet see them."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from coretraffic.observe.listener_handover import METRIC_VALUES, read_tcp_migrate_req
from coretraffic.testing.pki import DemoCA, demo_route, route_config
from coretraffic.testing.upstream import DemoUpstream
from tests.support.coreflow import Peer
from tests.support.dataplane import https_get
from tests.support.driver import Driver, caddy_pids, command
from tests.support.ports import Ports, free_port
from tests.support.status import Status
from tests.support.upstreams import refused_port
from tests.support.waiting import wait_until

MISMATCH = "broken.example.test: privateKey: does not match the certificate"


def status_command(*args: str) -> subprocess.CompletedProcess[str]:
    return command("status", *args)


@pytest.fixture
def status() -> Status:
    return Status(free_port())


@pytest.fixture
def run_args(driver_flags: list[str], status: Status) -> list[str]:
    return ["run", *driver_flags, "--status-addr", status.address]


async def test_status_of_a_driver_serving_routes_and_one_rejected_host(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, run_args: list[str], status: Status
) -> None:
    routes = short_tmp / "routes.json"
    good = [demo_route(ca, f"good{i}.example.test", upstream.port) for i in range(2)]
    in_ten_days = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    good[1] = route_config("good1.example.test", ca.issue(["good1.example.test"], not_after=in_ten_days), upstream.port)
    broken = demo_route(ca, "broken.example.test", upstream.port)
    broken["privateKey"] = good[0]["privateKey"]
    routes.write_text(json.dumps([*good, broken]))
    driver = Driver([*run_args, "--routes", str(routes)])
    try:
        await wait_until(lambda: _is(200, status, "/readyz"), 30, "ready")
        assert (await status.get("/readyz")).text.startswith("ready: caddy runs config coretraffic_config_")
        assert await status.code("/healthz") == 200

        document = await status.document()
        assert document["ready"] is True
        assert document["routes"] == {"desired": 3}
        (caddy,) = document["caddies"]
        target = f"unix/{(short_tmp / 'state' / 'admin.sock').resolve()}"
        assert caddy["admin"] == target
        assert caddy["routes"] == {"applied": 2, "rejected": 1, "stale": 0}
        assert caddy["runs_latest_set"] and caddy["not_running_it_because"] == ""
        assert caddy["last_apply"]["outcome"] == "applied"
        (rejected,) = caddy["last_apply"]["rejected"]
        assert rejected.startswith(MISMATCH)
        assert document["source"] == {"routes_file": str(routes), "problem": None}
        assert document["discovery"] == []
        certificates = document["certificates"]
        assert (certificates["loaded"], certificates["expired"]) == (2, [])  # the rejected host's is not loaded
        assert [c["host"] for c in certificates["soonest"]] == ["good1.example.test", "good0.example.test"]
        assert 9.9 < certificates["soonest"][0]["days_left"] <= 10
        assert certificates["expiring_within_days"] == {"7": 0, "14": 1, "30": 1}
        assert caddy["healthy"] and caddy["spawned"]
        assert caddy["not_managed"] == []
        # This test runs in the machine's network namespace: the driver reports what the kernel says there.
        migrate = read_tcp_migrate_req()
        assert document["kernel"] == {"tcp_migrate_req": migrate}
        assert caddy["tcp_migrate_req"] == migrate  # the spawned Caddy listens in this namespace
        warned = "net.ipv4.tcp_migrate_req is 0"
        assert driver.output.count(warned) == (1 if migrate == "off" else 0), driver.output

        metrics = await status.metrics()
        label = f'target="{target}"'
        assert metrics["coretraffic_routes_desired"] == 3
        assert metrics["coretraffic_caddies"] == 1
        assert metrics[f"coretraffic_routes_applied{{{label}}}"] == 2
        assert metrics[f"coretraffic_routes_rejected{{{label}}}"] == 1
        assert metrics[f'coretraffic_applies_total{{outcome="applied",{label}}}'] == 1
        assert metrics[f'coretraffic_apply_failures_total{{reason="caddy_rejected",{label}}}'] == 0
        assert metrics[f"coretraffic_apply_duration_seconds_count{{{label}}}"] == 1
        assert metrics[f"coretraffic_last_successful_apply_timestamp_seconds{{{label}}}"] > 0
        assert metrics[f"coretraffic_caddy_behind_seconds{{{label}}}"] == 0
        assert metrics[f"coretraffic_caddy_restarts_total{{{label}}}"] == 0
        assert metrics[f'coretraffic_config_info{{config_id="{caddy["config_id"]}",{label}}}'] == 1
        assert "coretraffic_coreflow_connected" not in metrics  # routes-file mode: no Coreflow to speak of
        expiry = metrics['coretraffic_certificate_not_after_timestamp_seconds{host="good1.example.test"}']
        assert abs(expiry - in_ten_days.timestamp()) < 2  # whole seconds in the certificate
        assert metrics["coretraffic_certificate_soonest_not_after_timestamp_seconds"] == expiry
        assert metrics['coretraffic_certificates_expiring{within_days="14"}'] == 1
        assert metrics["coretraffic_tcp_migrate_req"] == METRIC_VALUES[migrate]

        printed = await asyncio.to_thread(status_command, "--status-addr", status.address)
        assert printed.returncode == 0, printed
        lines = printed.stdout.splitlines()
        assert lines[0] == "coretraffic 0.1.0: ready"
        assert "routes:  3 desired" in lines
        assert "certificates: 2 loaded; expiring within 7/14/30 days: 0/1/1" in lines
        assert any(line.startswith("  good1.example.test: 20") and "(in 10 days)" in line for line in lines), lines
        assert any(line.startswith(f"kernel:  net.ipv4.tcp_migrate_req {migrate}") for line in lines), lines
        assert f"caddy {target}: answering; runs the latest set" in lines
        assert "  routes: 2 applied, 1 rejected" in lines
        assert lines[-2:] == ["  rejected:", f"    {rejected}"]

        # A server put into Caddy by someone else: seen at the next heal check, kept, and shown.
        socket_path = str(short_tmp / "state" / "admin.sock")
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path)) as admin:
            server = {"listen": [f"127.0.0.1:{free_port()}"], "routes": []}
            response = await admin.put("http://localhost/config/apps/http/servers/by_hand", json=server)
            assert response.status_code == 200, response.text
        await wait_until(lambda: _not_managed(status, ["server by_hand"]), 15, "the server to be seen")
        printed = await asyncio.to_thread(status_command, "--status-addr", status.address)
        assert "  not coretraffic's, left alone: server by_hand" in printed.stdout.splitlines()

        # Caddy killed: the driver restarts it, counts it, and is ready again (Caddy resumed its autosave).
        (pid,) = caddy_pids(run_args[2])
        os.kill(pid, signal.SIGKILL)
        restarts = f"coretraffic_caddy_restarts_total{{{label}}}"
        await wait_until(lambda: _metric_is(status, restarts, 1), 15, "restart counted")
        await wait_until(lambda: _is(200, status, "/readyz"), 15, "ready again")
    finally:
        assert driver.stop() == 0


async def test_a_broken_routes_file_shows_in_status_and_metrics_until_a_good_one_arrives(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, run_args: list[str], status: Status
) -> None:
    routes = short_tmp / "routes.json"
    good = [demo_route(ca, "good.example.test", upstream.port)]
    routes.write_text(json.dumps(good))
    driver = Driver([*run_args, "--routes", str(routes)])
    try:
        await wait_until(lambda: _is(200, status, "/readyz"), 30, "ready")
        assert await status.metric("coretraffic_source_errors_total") == 0
        routes.write_text('[{"hostName": "x",\n oops]')

        async def problem_shown() -> bool:
            return (await status.document())["source"]["problem"] is not None

        await wait_until(problem_shown, 10, "the broken file shown in /status")
        problem = (await status.document())["source"]["problem"]
        assert "is not valid JSON (line 2, column 2)" in problem["error"]
        assert problem["effect"] == "the last good route set keeps serving" and problem["since"]
        assert await status.metric("coretraffic_source_errors_total") == 1
        assert await status.metric("coretraffic_source_failing") == 1
        assert await status.code("/readyz") == 200  # the last good set is still what Caddy runs
        text = status_command("--status-addr", status.address).stdout
        assert "PROBLEM since" in text and "not valid JSON" in text

        routes.write_text(json.dumps({"reverseConfigs": "not a list"}))  # JSON, but not a route set
        await wait_until(
            lambda: _source_error_contains(status, "not a route set"), 10, "the second problem shown in /status"
        )
        assert await status.metric("coretraffic_source_errors_total") == 2

        routes.write_text(json.dumps(good))
        await wait_until(lambda: _not(problem_shown), 10, "the problem cleared")
        assert await status.metric("coretraffic_source_failing") == 0
        assert await status.metric("coretraffic_source_errors_total") == 2
    finally:
        assert driver.stop() == 0


async def test_a_failing_upstream_shows_with_its_hosts_in_status_metrics_and_the_command(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, run_args: list[str], status: Status, ports: Ports
) -> None:
    dead = refused_port()
    routes = short_tmp / "routes.json"
    shared = [{**demo_route(ca, f"{name}.example.test", upstream.port), "destinationPorts": [dead, upstream.port]}
              for name in ("a", "b")]  # fmt: skip
    routes.write_text(json.dumps([*shared, demo_route(ca, "c.example.test", upstream.port)]))
    # A long fail duration: the failure must still be counted when the test reads it.
    driver = Driver([*run_args, "--routes", str(routes), "--upstream-fail-duration", "120"])
    try:
        await wait_until(lambda: _is(200, status, "/readyz"), 30, "ready")
        (caddy,) = (await status.document())["caddies"]
        assert caddy["upstreams"] == {"failing": [], "failed": [], "problem": ""}
        for _ in range(2):  # round robin: one of the two tries the dead upstream first
            assert (await https_get(ca, ports.https, "a.example.test")).status_code == 200

        (caddy,) = (await status.document())["caddies"]
        address = f"127.0.0.1:{dead}"
        assert caddy["upstreams"]["failing"] == [{"address": address, "fails": 1,
                                                  "hosts": ["a.example.test", "b.example.test"],
                                                  "hosts_total": 2}]  # fmt: skip
        metrics = await status.metrics()
        target = f'target="{caddy["admin"]}"'
        assert metrics[f"coretraffic_failing_upstreams{{{target}}}"] == 1
        assert metrics[f'coretraffic_host_failing_upstreams{{host="a.example.test",{target}}}'] == 1
        assert metrics[f'coretraffic_host_failing_upstreams{{host="b.example.test",{target}}}'] == 1
        assert f'coretraffic_host_failing_upstreams{{host="c.example.test",{target}}}' not in metrics
        printed = await asyncio.to_thread(status_command, "--status-addr", status.address)
        line = f"  upstreams: 1 failing: {address} (1 fail; a.example.test, b.example.test)"
        assert line in printed.stdout.splitlines(), printed.stdout
    finally:
        assert driver.stop() == 0


async def test_an_upstream_failure_is_counted_and_dated_after_caddy_has_forgotten_it(
    ca: DemoCA, upstream: DemoUpstream, short_tmp: Path, run_args: list[str], status: Status, ports: Ports
) -> None:
    """Caddy forgets a failure after the fail duration; the driver's counter and last-failure time stay,
    so an alert on them does not flap on a quiet host."""
    dead = refused_port()
    routes = short_tmp / "routes.json"
    quiet = {**demo_route(ca, "quiet.example.test", upstream.port), "destinationPorts": [dead, upstream.port]}
    routes.write_text(json.dumps([quiet]))
    driver = Driver([*run_args, "--routes", str(routes), "--upstream-fail-duration", "3"])
    address = f"127.0.0.1:{dead}"
    try:
        await wait_until(lambda: _is(200, status, "/readyz"), 30, "ready")
        target = f'target="{(await status.document())["caddies"][0]["admin"]}"'
        series = f'{{{target},upstream="{address}"}}'
        assert f"coretraffic_upstream_failures_total{series}" not in await status.metrics()  # none yet
        started = time.time()
        for _ in range(2):  # round robin: one of the two tries the dead upstream first (then it is out for 3 s)
            assert (await https_get(ca, ports.https, "quiet.example.test")).status_code == 200

        async def counted() -> bool:
            return (await status.metric(f"coretraffic_upstream_failures_total{series}")) == 1

        async def forgotten_by_caddy() -> bool:
            return (await status.metric(f"coretraffic_failing_upstreams{{{target}}}")) == 0

        await wait_until(counted, 10, "the failure counted")
        await wait_until(forgotten_by_caddy, 15, "Caddy to forget the failure (fail duration 3 s)")
        metrics = await status.metrics()
        assert metrics[f"coretraffic_upstream_failures_total{series}"] == 1  # still there, not counted twice
        last = metrics[f"coretraffic_upstream_last_failure_timestamp_seconds{series}"]
        assert started <= last <= time.time()
        (caddy,) = (await status.document())["caddies"]
        assert caddy["upstreams"]["failing"] == []
        (failed,) = caddy["upstreams"]["failed"]
        assert failed["address"] == address and failed["failures"] == 1 and failed["hosts"] == ["quiet.example.test"]
        printed = await asyncio.to_thread(status_command, "--status-addr", status.address)
        line = f"  upstream {address} failed 1 time since start, last at {failed['last_failure']}; quiet.example.test"
        assert line in printed.stdout.splitlines(), printed.stdout
    finally:
        assert driver.stop() == 0


async def _source_error_contains(status: Status, text: str) -> bool:
    problem = (await status.document())["source"]["problem"]
    return problem is not None and text in problem["error"]


async def _not(condition: Callable[[], Awaitable[bool]]) -> bool:
    return not await condition()


async def test_unreachable_caddy_is_unhealthy_and_not_ready(
    short_tmp: Path, run_args: list[str], status: Status
) -> None:
    routes = short_tmp / "routes.json"
    routes.write_text("[]")
    driver = Driver([*run_args, "--routes", str(routes), "--caddy-admin", f"unix/{short_tmp / 'none.sock'}"])
    try:
        await wait_until(lambda: _is(503, status, "/healthz"), 30, "the status server to answer")
        assert "unreachable" in (await status.get("/healthz")).text
        not_ready = (await status.get("/readyz")).text
        assert not_ready.startswith("no route set applied yet: Caddy admin API at unix/") and "unreachable" in not_ready
        failures = f'coretraffic_apply_failures_total{{reason="caddy_unavailable",target="unix/{short_tmp}/none.sock"}}'
        await wait_until(
            lambda: _metric_above(status, failures, 0),
            10,
            "the failed load attempts counted",
        )
        printed = await asyncio.to_thread(status_command, "--status-addr", status.address)
        assert printed.returncode == 1
        assert printed.stdout.startswith("coretraffic 0.1.0: NOT READY: no route set applied yet: ")
        assert "NOT ANSWERING" in printed.stdout and "external" in printed.stdout
        # A Caddy the driver does not spawn listens in a namespace the driver cannot read: unknown, never warned.
        document = await status.document()
        assert document["kernel"] == {"tcp_migrate_req": "unknown"}
        assert [c["tcp_migrate_req"] for c in document["caddies"]] == ["unknown"]
        assert "net.ipv4.tcp_migrate_req unknown (not readable here" in printed.stdout
        assert "tcp_migrate_req is 0" not in driver.output

        # Only small GET/HEAD requests are served; anything else is answered or dropped, never crashes it.
        assert await status.code("/nothing") == 404
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"http://{status.address}/status")).status_code == 405
            head = await client.head(f"http://{status.address}/metrics")
            assert head.status_code == 200 and head.content == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", status.port)
        writer.write(b"NONSENSE\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert await status.code("/metrics") == 200
    finally:
        assert driver.stop() == 0


async def test_coreflow_connection_in_metrics_and_status(run_args: list[str], status: Status) -> None:
    peer = await Peer.start()
    driver = Driver(run_args, env={"CORETRAFFIC_COREFLOW_URL": peer.url})
    try:
        await wait_until(lambda: _metric_is(status, "coretraffic_coreflow_connected", 1), 30, "connected")
        assert (await status.document())["source"] == {"coreflow": peer.url, "connected": True, "reconnects": 0}
        assert await status.code("/readyz") == 503  # connected, but Coreflow has sent no routes yet
        await peer.kill()
        await wait_until(lambda: _metric_is(status, "coretraffic_coreflow_connected", 0), 30, "disconnected")
        await wait_until(lambda: _metric_above(status, "coretraffic_coreflow_reconnects_total", 0), 10, "retrying")
        printed = await asyncio.to_thread(status_command, "--status-addr", status.address)
        assert f"source:  coreflow {peer.url} NOT CONNECTED" in printed.stdout
    finally:
        assert driver.stop() == 0
        await peer.close()


def test_taken_status_port_is_a_one_line_error(short_tmp: Path, run_args: list[str], status: Status) -> None:
    (short_tmp / "routes.json").write_text("[]")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", status.port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "coretraffic", *run_args, "--routes", str(short_tmp / "routes.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1]
        == f"coretraffic: status server cannot listen on {status.address}: Address already in use"
    )
    assert "Traceback" not in done.stderr
    assert caddy_pids(run_args[2]) == []  # the Caddy it had started is stopped


@pytest.mark.parametrize(("args", "expected"), [(["--status-addr", ""], "is empty"), ([], "no status server at")])
def test_status_command_without_a_server_is_a_one_line_error(args: list[str], expected: str) -> None:
    done = status_command(*(args or ["--status-addr", f"127.0.0.1:{free_port()}"]))
    assert done.returncode == 2
    assert done.stderr.startswith("coretraffic: ") and expected in done.stderr
    assert len(done.stderr.splitlines()) == 1


async def _is(expected: int, status: Status, path: str) -> bool:
    return await status.code(path) == expected


async def _metric_is(status: Status, name: str, value: float) -> bool:
    try:
        return await status.metric(name) == value
    except httpx.TransportError:
        return False


async def _metric_above(status: Status, name: str, value: float) -> bool:
    try:
        return (await status.metric(name) or 0) > value
    except httpx.TransportError:
        return False


async def _not_managed(status: Status, parts: list[str]) -> bool:
    (caddy,) = (await status.document())["caddies"]
    return bool(caddy["not_managed"] == parts)
