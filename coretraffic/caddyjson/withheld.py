"""Names whose config was refused, kept from the wildcard above them.

Pure. A host whose config is refused, and that has no last good version to serve (`core.serving`), is not served.
But when a wildcard of the same set covers its name, Caddy hands its requests to the wildcard's config: the
wildcard's upstreams, with the wildcard's auth or none. An application behind the wildcard that routes by Host
would then serve the refused host's pages without the auth that host was meant to have. So such a name gets a
route of its own, after the exact hosts and before the wildcards, that answers 503 and says why.

Applied to a rendered config rather than inside `render`, which stays a function of the routes alone: the
reconcilers, `render` and `diff` add it the same way. The config's marker takes the withheld names in, so a
Caddy that runs the config without them is told apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from coretraffic.caddyjson.layout import (
    CONFIG_ID_PREFIX,
    HTTPS_ROUTES_PATH,
    JSON,
    MARKER_PATH,
    WITHHELD_ID,
    config_id,
    route_hosts,
)
from coretraffic.caddyjson.tree import get_in, replaced


def with_withheld(config: JSON, refused: Iterable[str]) -> JSON:
    """`config` (as rendered, not changed) with a 503 route for each of the `refused` names a wildcard covers."""
    routes = get_in(config, *HTTPS_ROUTES_PATH[:-1]).get("routes", [])
    wildcards = {host[2:]: index for index, route in enumerate(routes) for host in _wildcards(route)}
    if not wildcards:
        return config
    names = sorted({name for name in refused if not name.startswith("*.") and name.partition(".")[2] in wildcards})
    if not names:
        return config
    first_wildcard = min(wildcards.values())
    # Whatever else the wildcard's route requires beside its host (per-host metrics' port guard) this one does too.
    beside_host = {k: v for k, v in routes[first_wildcard]["match"][0].items() if k != "host"}
    block = {
        "@id": WITHHELD_ID,
        "match": [{"host": names, **beside_host}],
        "handle": [
            {
                "handler": "static_response",
                "status_code": 503,
                "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                "body": "{http.request.host}: this host's config was refused by coretraffic; it is not served\n",
            }
        ],
        "terminal": True,
    }
    marker = config_id(config) or CONFIG_ID_PREFIX
    digest = hashlib.sha256("\0".join([marker, *names]).encode()).hexdigest()[:24]
    result: JSON = replaced(
        config,
        {
            HTTPS_ROUTES_PATH: [*routes[:first_wildcard], block, *routes[first_wildcard:]],
            MARKER_PATH: CONFIG_ID_PREFIX + digest,
        },
    )
    return result


def _wildcards(route: JSON) -> list[str]:
    return [host for host in route_hosts(route) if host.startswith("*.")]
