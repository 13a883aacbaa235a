"""`python -m benchmarks [--sizes 100,1000,10000] [--repeats 5]`: print the table of side-by-side ratios."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform

from benchmarks.update_to_serving import measure


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--sizes", default="100,1000,10000", help="route counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="alternated rounds per size (median is reported)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # Caddy's own lines would break up the table
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# {datetime.date.today()} on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print("| routes | update-to-serving, ours | raw /load | ratio | overhead | goal <= 1.1x + 20 ms |")
    print("|---:|---:|---:|---:|---:|:--|")
    for size in sizes:
        row = asyncio.run(measure(size, args.repeats))
        met = row.ours_s <= 1.1 * row.raw_s + 0.020
        print(
            f"| {row.routes:,} | {row.ours_s * 1000:.0f} ms | {row.raw_s * 1000:.0f} ms | {row.ratio:.2f}x "
            f"| {row.overhead_ms:+.0f} ms | {'met' if met else 'NOT met'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
