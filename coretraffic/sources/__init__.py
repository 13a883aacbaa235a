"""Where route sets come from: the routes file (the embedded default) and Coreflow (TypedSocket).

Every source hands its documents to `intake`, which validates them off the event loop and queues them at the
fleet of Caddies, so all sources behave the same; each is a `source.RouteSource`, which `run` starts and the status
server describes without knowing its kind.
"""
