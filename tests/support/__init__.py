"""Helpers shared by the tests, one job per module. Test modules and conftest files import from here; nothing
imports a test module or a conftest file.

- `paths`: where the repository, the tests, their fixed data and the Coreflow test peer are.
- `ports`: free loopback ports.
- `waiting`: waiting on a condition with a deadline (tests never sleep to synchronise).
- `dataplane`: HTTPS requests to Caddy's data plane as a client makes them.
- `caddy`: route sets validated as the driver validates them, the cheap renderer, a running reconciler (and
  `OneCaddy`, a reconciler fed as a fleet of one), and finding `@id` objects in a Caddy config.
- `golden`: where the golden cases live, the one way to rewrite them (`UPDATE_GOLDEN=1`), the fake hasher.
- `coreflow`: the real TypedSocket peer (Coreflow's end), the stub handler and watch of the client tests, and a
  client wired to a reconciler as the driver wires it.
- `canary`: the secrets canary of the reliability tests, and the check that no secret comes back.
- `hostile`: hypothesis strategies for hostile route sets, and what validation must promise about them.
- `load`: a load client that accounts for every request.
- `driver`: the driver as a process (`python -m coretraffic`), the Caddy it starts, its status server.
- `pods`: Caddies as pods in network namespaces of their own (optionally mount namespaces too), Caddies on
  loopback addresses of their own, for the fleet tests (and the root check that skips or, in CI, fails them).
- `dns`: dnsmasq, the real DNS server of the tests with DNS-named upstreams and of the fleet's discovery.
- `reference`: the generated tables of the reference (docs/reference/), `just reference` to rewrite them, and
  reading its hand-written tables back.
- `observed_driver`: a status server over a driver with something in every part it shows (real sources and
  serving policy, a fake Caddy), for the tests that hold the reference to `/status` and `/metrics`.
"""
