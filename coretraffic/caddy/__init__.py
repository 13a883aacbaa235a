"""The Caddy edge: the only code that talks to a Caddy.

`admin` is the admin API client (load a config, read it back, ask for an `@id`), `process` the Caddy that
coretraffic spawns itself, `adapt` the one `caddy adapt` run that turns the operator's base Caddyfile into JSON.
"""
