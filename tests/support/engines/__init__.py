"""The engine suite's helpers (tests/engines): images made from Debian packages (`images`), a Swarm of several
dockerd on one machine (`swarm`), the stack deployed as an operator would (`deployment`), and requests to the
edge as its clients make them (`probe`)."""
