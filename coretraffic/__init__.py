"""coretraffic: the ingress driver beside Caddy.

Coreflow (or a routes file) supplies the desired reverse-proxy configs; `validate` sorts out the bad ones,
`render` turns the rest into Caddy JSON, the `reconciler` applies it through Caddy's admin API.
"""

__version__ = "0.1.0"
