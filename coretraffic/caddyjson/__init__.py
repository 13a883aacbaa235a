"""The Caddy JSON dialect coretraffic writes and reads back, pure.

Third stop of the loop: `render` turns valid routes into one Caddy config; `ownership` tells coretraffic's parts of
a running config from the base config's and from someone else's. No I/O: the Caddy edge (`coretraffic.caddy`) sends
what is made here.
"""
