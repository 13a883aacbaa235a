"""What a route set would change in the running Caddy, worked out before it happens: `coretraffic diff`'s core.

A dry run of the loop's last stop, pure: `plan` compares the config Caddy runs with the one rendered from the set
and says what changes per host, `report` prints that plan, `unified` prints the two Caddy JSON documents' unified
diff with every secret a fingerprint. The command that fetches both sides is `coretraffic.cli.diff`.
"""
