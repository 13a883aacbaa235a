"""Every error coretraffic raises on purpose, in one tree.

    CoretrafficError
    ├── UserError              a person can fix it: a command ends with one line on stderr and exit 2
    │   ├── UsageError         a flag or `CORETRAFFIC_*` variable that cannot work, a missing argument
    │   ├── RoutesFileError    a routes file that cannot be read or is not JSON
    │   ├── RouteSetError      a route set unusable as a whole (not a list of configs)
    │   ├── BaseConfigError    the operator's base config cannot be read, adapted or merged
    │   ├── CaddyStartError    the spawned Caddy could not be started
    │   ├── StateDirInUse      another driver holds the state directory
    │   ├── StatusError        the status server cannot listen, or (for `coretraffic status`) does not answer
    │   └── RemovalNotHeld     `confirm-removal` names a removal that is not held back (any more)
    ├── CaddyError             a Caddy admin API call did not succeed
    │   ├── CaddyUnavailable   no answer, a timeout or a 5xx: worth trying again
    │   │   ├── CaddyUnreachable  no connection: no socket, refused, TLS failed, timed out
    │   │   └── LoadInDoubt    a load was sent and its answer never came: Caddy may still be applying it
    │   └── CaddyRejected      a 4xx: the config was refused, the old one keeps serving; retrying will not help
    ├── FieldError             one field of one config is wrong; validation turns it into a per-host Problem
    ├── StateFileError         a file of the state directory cannot be read or is not JSON: its reader goes without it
    ├── DriverRecordError      a driver's settings record that cannot be used: the commands warn and go without it
    ├── RouteSetHeldBack       nothing of a set is applied: the removal guard holds it back whole (after a restart)
    └── CoreflowError          the Coreflow connection (the client reconnects; nothing reaches the user)
        ├── FramingError       a frame that does not follow the wire protocol
        └── ConnectionLost     the connection ended or never became usable

Bad input from a source is never an exception to the loop: a config with a `FieldError` becomes a Problem that
names the host and the field, and the rest of the set is applied.
"""

from __future__ import annotations


class CoretrafficError(Exception):
    """Base of every error coretraffic raises on purpose."""


class UserError(CoretrafficError):
    """Something a person can fix; shown as one line, exit code 2."""


class UsageError(UserError):
    """A setting or argument that cannot work."""


class RoutesFileError(UserError):
    """A routes file that cannot be read, or is not JSON."""


class RouteSetError(UserError):
    """The route set as a whole is unusable (not a list, not JSON, ...): nothing in it can be applied."""


class BaseConfigError(UserError):
    """The operator's base config cannot be read or adapted, or clashes with what coretraffic manages."""


class CaddyStartError(UserError):
    """Caddy could not be started (no binary, bad state directory, admin API never answered)."""


class StateDirInUse(UserError):
    """Another driver holds the state directory's lock."""


class StatusError(UserError):
    """The status server cannot listen, or (for `coretraffic status`) does not answer."""


class RemovalNotHeld(UserError):
    """An operator confirmed a held-back removal that is not (or no longer) held back."""


class CaddyError(CoretrafficError):
    """A call to Caddy's admin API did not succeed."""


class CaddyUnavailable(CaddyError):
    """Caddy did not answer, or answered 5xx (`status`): worth trying again."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CaddyUnreachable(CaddyUnavailable):
    """No answer from the admin API at `address` (its name, as Caddy writes it), for `reason` (a few words)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"Caddy admin API at {address} unreachable: {reason}")
        self.address = address
        self.reason = reason


class LoadInDoubt(CaddyUnavailable):
    """A `/load` was sent but no answer came (timeout, connection dropped): Caddy may be applying it still."""


class CaddyRejected(CaddyError):
    """Caddy answered 4xx: the config was refused and the old one keeps serving."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"Caddy rejected the config (HTTP {status}): {error}")
        self.status = status
        self.error = error


class FieldError(CoretrafficError):
    """One field of one config is wrong; validation turns it into a `Problem` naming the host and the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class StateFileError(CoretrafficError):
    """A file of the state directory cannot be read or is not JSON; whoever reads it warns and goes without it."""


class DriverRecordError(CoretrafficError):
    """The settings a driver recorded in its state directory cannot be read; `diff` and `render` warn and go on
    without them."""


class RouteSetHeldBack(CoretrafficError):
    """Nothing of a route set is applied: it would remove most of the hosts a previous driver process served, and
    their configs are not known to keep them (`core.serving`). The source is told why; the Caddies keep what they
    run."""


class CoreflowError(CoretrafficError):
    """The Coreflow connection failed; the client reconnects."""


class FramingError(CoreflowError):
    """A frame that does not follow the TypedSocket wire protocol."""


class ConnectionLost(CoreflowError):
    """The connection to Coreflow ended or never became usable; the client reconnects."""
