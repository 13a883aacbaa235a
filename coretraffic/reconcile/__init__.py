"""Time and state: the one package that decides when Caddy is loaded and knows what it runs.

`reconciler` takes validated route sets from the sources, coalesces them, renders, loads through the Caddy edge,
retries, isolates rejected hosts and heals a Caddy that lost its config. `target` is one Caddy as the driver runs
it: its admin client, its reconciler and, when spawned, its process.
"""
