"""`python -m benchmarks`: the whole suite, one table of side-by-side ratios (see BENCHMARKS.md).

`--smoke` runs every measurement briefly on small sets (seconds, for CI); the full run takes a few minutes.
`--scale` runs only the rows from 10,000 to 100,000 hosts (`at_scale`): 15 to 30 minutes, and about 4 GB of
memory for Caddy.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import statistics

from benchmarks import (
    at_scale,
    continuity,
    diff_cli,
    fleet,
    ocsp_load,
    remote_admin,
    scale,
    traffic_metrics,
    update_to_serving,
    upstream_failure,
)
from benchmarks.harness import Bed, bed, require_h2load


def _kinds(failures: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(failures.items())) or "none"


def _row(what: str, ratio: float, goal: str, met: bool, detail: str) -> str:
    return f"| {what} | {ratio:.2f} | {goal} | {'met' if met else 'NOT met'} | {detail} |"


async def traffic_rows(b: Bed, args: argparse.Namespace) -> list[str]:
    """What Caddy's request metrics cost (`traffic_metrics`)."""
    m = await traffic_metrics.per_host_against_off(b, args.metrics_hosts, args.seconds, args.rounds)
    rows = [
        _row(f"rps with per-host metrics / without, {m.hosts:,} hosts", m.ratio, ">= 0.9", m.ratio >= 0.9,
             f"{statistics.median(m.per_host_rps):,.0f} / {statistics.median(m.off_rps):,.0f} rps (rounds "
             f"{', '.join(f'{p / o:.2f}' for p, o in zip(m.per_host_rps, m.off_rps, strict=True))}); "
             f"{m.series_per_host} series for the host's GETs, status codes {', '.join(m.codes)}")
    ]  # fmt: skip
    print(rows[-1], flush=True)
    t = await traffic_metrics.load_time_with_and_without(b, args.metrics_load_hosts, args.rounds + 1)
    rows.append(
        _row(f"/load with per-host metrics / without, {t.hosts:,} hosts", t.ratio, "reported", True,
             f"{statistics.median(t.per_host_s):.2f} / {statistics.median(t.off_s):.2f} s (rounds "
             f"{_seconds(t.per_host_s)} / {_seconds(t.off_s)})")
    )  # fmt: skip
    print(rows[-1], flush=True)
    return rows


async def traffic_suite(args: argparse.Namespace) -> list[str]:
    async with bed() as b:
        return await traffic_rows(b, args)


async def suite(args: argparse.Namespace) -> list[str]:
    rows = []
    async with bed() as b:
        for size in args.sizes:
            d = await scale.dispatch(b, size, args.seconds, args.rounds, with_flat=not args.smoke)
            flat = f"; flat layout {d.flat_ratio:.2f}" if d.flat_ratio is not None else ""
            if d.own_ports_ratio is not None:
                flat += f"; each host on ports of its own {d.own_ports_ratio:.2f}"
            rows.append(
                _row(f"worst host / one-route rps, {size:,} hosts", d.ratio, ">= 0.9", d.ratio >= 0.9,
                     f"median of rounds {', '.join(f'{r:.2f}' for r in d.ratios)}; "
                     f"{d.worst_rps:,.0f} / {d.one_route_rps:,.0f} rps{flat}")
            )  # fmt: skip
            print(rows[-1], flush=True)
        rows += await traffic_rows(b, args)
        ratio = await scale.auth_vs_open(b, args.seconds, args.rounds)
        rows.append(_row("authed / open rps", ratio, ">= 0.9", ratio >= 0.9, "bcrypt cost 10, hash_cache on"))
        print(rows[-1], flush=True)
        for dead in await upstream_failure.one_of_three_dead(b, args.seconds, args.rounds):
            rows.append(
                _row(f"1 of 3 upstreams dead / all 3 live rps, {dead.layout} layout", dead.ratio, ">= 0.9, 0 failed",
                     dead.ratio >= 0.9 and dead.failed == 0,
                     f"median of rounds {', '.join(f'{r:.2f}' for r in dead.ratios)}; "
                     f"{dead.failed} of {dead.requests:,} requests failed")
            )  # fmt: skip
            print(rows[-1], flush=True)
        r = await scale.reloads_under_traffic(b, args.reload_routes, args.reloads)
        rows.append(
            _row(f"Caddy RSS after {r.reloads} reloads under traffic / steady", r.ratio, "<= 1.5", r.ratio <= 1.5,
                 f"{r.settled_mb:.0f} / {r.steady_mb:.0f} MB ({r.right_after_mb:.0f} MB right after the last reload), "
                 f"{args.reload_routes:,} routes, "
                 f"{r.requests:,} requests, {r.failed} failed, {r.hung} h2load runs hung")
        )  # fmt: skip
        print(rows[-1], flush=True)
        w = await continuity.websockets_across_reloads(b, args.reload_routes, args.websockets, args.reloads)
        rows.append(
            _row(f"WebSockets echoing after {w.reloads} reloads / opened", w.alive / w.opened, "1.00",
                 w.alive == w.opened, f"{w.alive} / {w.opened}, {args.reload_routes:,} routes, one host changed "
                 f"per reload, stream_close_delay {b.settings.stream_close_delay}")
        )  # fmt: skip
        print(rows[-1], flush=True)
        rows.append(
            _row(f"Caddy RSS with {w.opened} WebSockets across {w.reloads} reloads / steady", w.ratio, "<= 1.5",
                 w.ratio <= 1.5, f"{w.settled_mb:.0f} / {w.steady_mb:.0f} MB, {args.reload_routes:,} routes, "
                 "HTTP traffic throughout")
        )  # fmt: skip
        print(rows[-1], flush=True)
        n = await continuity.new_connections_across_reloads(b, args.reloads)
        ours, bare = n.per_100(n.ours_failures, n.reloads), n.per_100(n.bare_failures, n.reloads)
        rows.append(
            _row("failed new-connection requests per 100 reloads, ours / bare Caddy", ours / bare if bare else 0.0,
                 "0 (ours)", ours == 0, f"ours {ours:.0f} ({n.ours_ok:,} ok; {_kinds(n.ours_failures)}), bare "
                 f"default config {bare:.0f} ({n.bare_ok:,} ok; {_kinds(n.bare_failures)}); HTTPS/1.1, 8 clients, "
                 f"a connection per request, {n.reloads} reloads; tcp_migrate_req {n.tcp_migrate_req}")
        )  # fmt: skip
        print(rows[-1], flush=True)
        c = await scale.driver_cost(b, args.cost_routes)
        rows.append(
            _row(f"driver CPU / Caddy /load, {args.cost_routes:,} routes, one changed", c.ratio, "<= 0.10",
                 c.ratio <= 0.10, f"{c.driver_cpu_s * 1000:.0f} ms / {c.caddy_load_s * 1000:.0f} ms; "
                 f"driver RSS {c.driver_rss_mb:.0f} MB (goal <= 150)")
        )  # fmt: skip
        print(rows[-1], flush=True)
        t = await diff_cli.measure(b, args.diff_routes, args.rounds + 1)
        rows.append(
            _row(f"`coretraffic diff` / reading /config/ alone, {t.routes:,} routes, 30 changed", t.ratio,
                 "diff < 2 s", t.median_s < 2.0,
                 f"diff {t.median_s:.2f} s (runs {', '.join(f'{s:.2f}' for s in t.ours_s)}); read alone "
                 f"{t.floor_median_s:.2f} s; against an empty Caddy (all added) {t.all_added_s:.2f} s")
        )  # fmt: skip
        print(rows[-1], flush=True)
        o = await ocsp_load.measure(b, args.ocsp_certificates, args.rounds + 1)
        rows.append(
            _row(f"/load of CA-issued / self-signed certificates, {o.certificates} each, responder never answers",
                 o.ratio, "<= 1.2", o.ratio <= 1.2,
                 f"{o.ca_issued_s * 1000:.0f} / {o.self_signed_s * 1000:.0f} ms; self-signed with the intermediate "
                 f"appended {o.with_intermediate_s / o.self_signed_s:.2f}x; "
                 f"{o.responder_connections} connections to the OCSP responder")
        )  # fmt: skip
        print(rows[-1], flush=True)
        f = await fleet.measure(b, args.fleet_routes, args.rounds + 2)
        rows.append(
            _row(f"driver CPU per update, {fleet.CADDIES} Caddies / 1, {f.routes:,} routes", f.cpu_ratio, "<= 1.1",
                 f.cpu_ratio <= 1.1, f"{f.cpu_three_s * 1000:.0f} / {f.cpu_one_s * 1000:.0f} ms; "
                 f"{f.renders_per_set:g} render per set; per Caddy: its serialisation, /load send and ETag read")
        )  # fmt: skip
        print(rows[-1], flush=True)
        rows.append(
            _row(f"set to all {fleet.CADDIES} Caddies loaded / one raw /load, {f.routes:,} routes", f.serving_ratio,
                 "reported", True, f"{f.all_serving_s * 1000:.0f} / {f.raw_load_s * 1000:.0f} ms; the Caddies "
                 f"share {os.cpu_count()} cores, so their loads queue for CPU")
        )  # fmt: skip
        print(rows[-1], flush=True)
    for size in args.sizes:
        u = await update_to_serving.measure(size, args.rounds + 1)
        limit = 1.1 * u.raw_s + 0.020
        rows.append(
            _row(f"update-to-serving / raw /load, {size:,} routes", u.ratio, "<= 1.1x + 20 ms", u.ours_s <= limit,
                 f"{u.ours_s * 1000:.0f} / {u.raw_s * 1000:.0f} ms")
        )  # fmt: skip
        print(rows[-1], flush=True)
    g = await remote_admin.measure(args.remote_routes, args.rounds + 1)
    limit = 1.1 * g.local_s + 0.020
    rows.append(
        _row(f"/load through the mTLS admin gate / over the local socket, {g.routes:,} routes", g.ratio,
             "<= 1.1x + 20 ms", g.gate_s <= limit, f"{g.gate_s * 1000:.0f} / {g.local_s * 1000:.0f} ms")
    )  # fmt: skip
    print(rows[-1], flush=True)
    return rows


async def scale_suite(sizes: list[int], rounds: int) -> list[str]:
    """The rows of `at_scale`, one size after another in one run; the raw `/load` growth compares the sizes."""
    rows: list[str] = []
    measured: list[at_scale.Size] = []
    for size in sizes:
        # A load of 100,000 hosts takes about a minute: two rounds there, more where rounds are cheap.
        few = 2 if size >= 100_000 else rounds
        s, d = await at_scale.measure(size, few, few, with_diff=size == sizes[-1])
        measured.append(s)
        printed = len(rows)
        raw = f"raw /load {s.raw_median_s:.2f} s"
        rss = f"driver RSS {s.driver_rss_mb:,.0f} MB, Caddy RSS {s.caddy_rss_mb:,.0f} MB"
        rows += [
            _row(f"update-to-serving / raw /load, {size:,} hosts", s.serving_ratio, "<= 1.1", s.serving_ratio <= 1.1,
                 f"{s.ours_median_s:.2f} / {s.raw_median_s:.2f} s (rounds {_seconds(s.ours_s)} / {_seconds(s.raw_s)})"),
            _row(f"driver CPU / Caddy /load, {size:,} hosts, one changed", s.cpu_ratio, "<= 0.10", s.cpu_ratio <= 0.10,
                 f"{s.driver_cpu_s * 1000:,.0f} ms / POST /load {_seconds(s.raw_post_s)} s"),
            _row(f"cold start / (1.5 x raw /load + cold validation), {size:,} hosts", s.cold_start_ratio, "<= 1.0",
                 s.cold_start_ratio <= 1.0,
                 f"`coretraffic run --routes` to serving {_seconds(s.cold_start_s)} s; {raw}; `coretraffic check` "
                 f"{_seconds(s.cold_validation_s)} s; {rss}"),
        ]  # fmt: skip
        if size >= 100_000:
            rows.append(
                _row(f"driver RSS / 1 GB, {size:,} hosts", s.driver_rss_mb / 1024, "<= 1.0", s.driver_rss_mb <= 1024,
                     rss)
            )  # fmt: skip
        if d is not None:
            rows.append(
                _row(f"`coretraffic diff` / reading /config/ alone, {d.hosts:,} hosts, 30 changed", d.diff_s / d.read_s,
                     "diff < 15 s", d.diff_s < 15.0,
                     f"diff {d.diff_s:.2f} s beside the driver's state, {d.cold_s:.2f} s from an empty state "
                     f"directory; read alone {d.read_s:.2f} s; {d.summary}")
            )  # fmt: skip
        print("\n".join(rows[printed:]), flush=True)
    g = await at_scale.raw_load_growth(sizes[0], sizes[-1], 2)
    limit = 1.2 * g.large / g.small  # linear, and 20% on top
    rows.append(
        _row(f"raw /load, {g.large:,} / {g.small:,} hosts, alternated", g.ratio, f"<= {limit:.0f}", g.ratio <= limit,
             f"{_seconds(g.large_s)} / {_seconds(g.small_s)} s; per size above: "
             + ", ".join(f"{m.hosts:,}: {m.raw_median_s:.2f} s" for m in measured))
    )  # fmt: skip
    print(rows[-1], flush=True)
    k = await at_scale.rsa_against_ec(sizes[0], rounds)
    rows.append(
        _row(f"raw /load RSA-only / EC, {k.hosts:,} hosts", k.ratio, "reported", True,
             f"{statistics.median(k.rsa_s):.2f} / {statistics.median(k.ec_s):.2f} s")
    )  # fmt: skip
    print(rows[-1], flush=True)
    return rows


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per measurement, small sets (for CI)")
    parser.add_argument("--scale", action="store_true", help="only the rows from 10,000 to 100,000 hosts")
    parser.add_argument("--traffic", action="store_true", help="only the rows of what Caddy's request metrics cost")
    args = parser.parse_args()
    full = not args.smoke
    args.sizes = [100, 1000, 10000] if full else [200]
    args.seconds = 3.0 if full else 1.0
    args.rounds = 4 if full else 1
    args.reloads = 100 if full else 5
    args.reload_routes = 2000 if full else 200
    args.websockets = 100 if full else 10
    args.cost_routes = 10000 if full else 500
    args.diff_routes = 10000 if full else 500
    args.ocsp_certificates = 200 if full else 50
    args.remote_routes = 1000 if full else 100
    args.fleet_routes = 1000 if full else 200
    args.metrics_hosts = 1000 if full else 200
    args.metrics_load_hosts = 10000 if full else 300
    require_h2load()
    logging.basicConfig(level=logging.ERROR)  # Caddy's own lines would break up the table
    print(f"# {datetime.date.today()}, {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})")
    print("| measurement | ratio | goal | | detail |\n|---|---:|---|---|---|", flush=True)
    if args.traffic:
        asyncio.run(traffic_suite(args))
    elif not args.scale:
        asyncio.run(suite(args))
    if args.scale or args.smoke:
        asyncio.run(scale_suite([10_000, 30_000, 100_000] if args.scale else [100, 300], 4 if args.scale else 1))


if __name__ == "__main__":
    main()
