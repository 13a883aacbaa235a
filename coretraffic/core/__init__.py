"""The pure domain: wire types, per-host validation, password hashing and the wording of counts.

First stops of the loop. Raw JSON from a source becomes typed configs (`models`), then good routes and per-host
problems (`validate`); `readings` is the neutral type of a metric value. No I/O: the clock comes in as an
argument, and nothing here talks to a network, a process or a file.
"""
