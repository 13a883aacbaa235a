"""Read-only views of the loop: the status server (health, readiness, metrics, `/status`) and the logs.

Nothing here changes what Caddy runs.
"""
