"""Coreflow connector: receives routing updates pushed by Coreflow over TypedSocket.

`framing` knows the wire format (Engine.IO v4 / Socket.IO v5 / smartsocket / TypedRequest), `session`
keeps the connection alive and hands each `updateRouting` request to the fleet of Caddies.
"""

from coretraffic.sources.coreflow.session import CoreflowClient, RoutingHandler

__all__ = ["CoreflowClient", "RoutingHandler"]
