"""The Caddy JSON dialect coretraffic writes and reads back, pure.

Third stop of the loop: `render` turns valid routes into one Caddy config, merged into the operator's base config
(`base`); `ownership` tells coretraffic's parts of a running config from the base config's and from someone
else's; `readback` finds coretraffic's hosts in a config again (`tree`: cutting large configs without copying
them); `redact` turns its secrets into fingerprints for anything a person reads. `layout` is where all of them
(and the reconciler and `diff`) find coretraffic's names, `@id`s and shapes. No I/O: the Caddy edge
(`coretraffic.caddy`) sends what is made here.
"""
