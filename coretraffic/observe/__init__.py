"""Read-only views of the loop: the status server (health, readiness, metrics, `/status`) and the logs.

`view` holds the protocols through which the status server reads the driver, so nothing here imports `app`.

Nothing here changes what Caddy runs.
"""
