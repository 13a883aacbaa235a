"""Per-host validation: raw configs in, good routes plus a list of per-host problems out.

Second stop of the loop, pure (the clock comes in as an argument). One bad config never costs the others: every
config is checked on its own and every problem names the host and the wire field. No message ever quotes a
private key, a certificate body or a password. Certificate checks are cached by content, because Coreflow sends
the whole set on every change and re-parsing 10,000 PEM pairs each time would dominate the driver's cost.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar

import idna
from pydantic import ValidationError

from coretraffic.core import certificates
from coretraffic.core.certificates import Certificate, check_pem_pair
from coretraffic.core.models import BasicAuthentication, ReverseProxyConfig, route_set_items
from coretraffic.core.set_cache import SetCache
from coretraffic.core.text import printable
from coretraffic.core.trust import TrustedRoots, chain_warning
from coretraffic.core.wire_fields import unknown_field_findings
from coretraffic.errors import FieldError

Severity = Literal["error", "warning", "notice"]
P = ParamSpec("P")
T = TypeVar("T")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # used with fullmatch: '$' would allow a final \n
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Problem:
    """Something wrong with one host's config; `error` drops the host, `warning` only reports, and a `notice` (a
    field the wire format does not have) is shown by `check` but not logged per host."""

    host: str
    field: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.host}: {self.field}: {self.message}"


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str = field(repr=False)
    # A digest of the host's private key: what makes its bcrypt salt unique to the host yet the same on every
    # render (`passwords`).
    salt_key: bytes = field(repr=False)


@dataclass(frozen=True)
class Route:
    """A validated host, ready to render."""

    host: str
    upstreams: tuple[str, ...]
    certificate_pem: str = field(repr=False)
    private_key_pem: str = field(repr=False)
    certificate: Certificate
    basic_auth: BasicAuth | None = None


@dataclass(frozen=True)
class Validation:
    routes: tuple[Route, ...]
    problems: tuple[Problem, ...]
    # Set by `serving.ServingPolicy`: hosts served by their last good version because their new config was
    # refused, and why hosts this set removes keep serving (empty: none held back).
    stale: tuple[str, ...] = ()
    held_back: str = ""

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def notices(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "notice")

    @functools.cached_property
    def refused(self) -> dict[str, tuple[Problem, ...]]:
        """The hosts named by refused configs (whose name is a valid host) that the set does not serve otherwise,
        with their errors."""
        errors = self.errors
        if not errors:  # the usual set: no pass over 100,000 routes for nothing
            return {}
        served = {route.host for route in self.routes}
        found: dict[str, list[Problem]] = {}
        for problem in errors:
            try:
                host = normalise_host_name(problem.host)
            except FieldError:
                continue  # `#3`, or a name that is no host: nothing of it can be served
            if host not in served:
                found.setdefault(host, []).append(problem)
        return {host: tuple(problems) for host, problems in found.items()}


def validate_route_set(document: Any, now: datetime, roots: TrustedRoots | None = None) -> Validation:
    """Check a whole route set (a list of configs or `{"reverseConfigs": [...]}`).

    With `roots` (the system's: `sources.trust_store`), a chain that does not reach one is a warning (`trust`).
    Raises `RouteSetError` only when the document as a whole is unusable.
    """
    configs = route_set_items(document)
    _begin_route_set()
    return assemble(validate_configs(configs, now, roots=roots))


def known(raw: Any) -> bool:
    """Whether checking this config is cheap: its result, or its certificate pair's, is kept from the route set
    being validated or the one before it."""
    key = _content_key(raw)
    return key is not None and (_validated_contents.holds(key) or certificates.known_pair(key[4], key[3]))


def checked_pairs() -> list[tuple[tuple[str, str], Certificate]]:
    """The certificate pairs of the route set being validated, with their results: those of its configs found or
    checked by content (every accepted config of the usual types), which is what `CheckedPairsFile` writes. A copy
    taken in one go: another thread may be validating."""
    return [((key[4], key[3]), route.certificate) for key, route in _validated_contents.current()]


def keep_results(configs: Sequence[Any], outcomes: Outcomes) -> None:
    """Begin a route set whose configs were checked elsewhere (`validate_configs` in forked workers): their
    results are kept as if checked here, so that the next set finds them."""
    _begin_route_set()
    for raw, route in zip(configs, outcomes.routes, strict=True):
        key = _content_key(raw)
        if route is not None and key is not None:
            _validated_contents.keep(key, route)
            certificates.remember(key[4], key[3], route.certificate)


def _begin_route_set() -> None:
    _validated_contents.next_set()
    certificates.next_set()


@dataclass
class Outcomes:
    """Each config's result, in order: its route (None when rejected) and its problems. Picklable, for `parallel`.

    Two flat lists rather than a pair per config: thousands of small pairs kept alive make the cycle collector run
    full passes over the driver's heap mid-validation (BENCHMARKS.md, "What moved the numbers").
    """

    routes: list[Route | None] = field(default_factory=list)
    problems: list[tuple[Problem, ...]] = field(default_factory=list)

    def extend(self, other: Outcomes) -> None:
        self.routes += other.routes
        self.problems += other.problems


def validate_configs(
    configs: Sequence[Any], now: datetime, first: int = 0, roots: TrustedRoots | None = None
) -> Outcomes:
    """Check each config on its own: the part of validation that any slice of a route set can do apart.

    `first` is the position of `configs[0]` in the route set, for naming configs that have no hostName.
    """
    outcomes = Outcomes()
    for index, raw in enumerate(configs, first):
        route = None
        try:
            route, warnings = _validate_one(raw, now, roots)
        except ValidationError as exc:
            found = tuple(_pydantic_problems(_host_label(raw, index), exc))
        except ExceptionGroup as group:
            label = _host_label(raw, index)
            found = tuple(Problem(label, e.field, e.message) for e in group.exceptions if isinstance(e, FieldError))
        else:
            found = tuple(Problem(route.host, f, m, "warning") for f, m in warnings)  # mostly the empty ()
        fields = tuple(unknown_field_findings(raw))  # mostly the empty (), and cheap: it runs for every config
        if fields:
            label = route.host if route is not None else _host_label(raw, index)
            found += tuple(Problem(label, path, message, kind) for path, message, kind in fields)
            if any(kind == "error" for _, _, kind in fields):
                route = None
        outcomes.routes.append(route)
        outcomes.problems.append(found)
    return outcomes


def assemble(outcomes: Outcomes) -> Validation:
    """The route set from its configs' outcomes, in order: the first config for a host wins.

    A later config for a served host is a warning, not an error: the host is served (by the first), so counting it
    among the rejected hosts would tell Coreflow that a served host is down. Configs are numbered from 1.
    """
    routes: list[Route] = []
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, (route, found) in enumerate(zip(outcomes.routes, outcomes.problems, strict=True), 1):
        if route is None:
            problems.extend(found)
            continue
        if route.host in first_index:
            message = f"config #{index} ignored (duplicate of #{first_index[route.host]}, which is served)"
            problems.append(Problem(route.host, "hostName", message, "warning"))
            continue
        first_index[route.host] = index
        routes.append(route)
        problems.extend(found)
    return Validation(tuple(routes), tuple(problems))


def _host_label(raw: Any, index: int) -> str:
    """How messages name a config: its hostName made printable, or its position (from 1) when it has none."""
    name = raw.get("hostName") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not name:
        return f"#{index + 1}"
    return printable(name)


def _pydantic_problems(label: str, exc: ValidationError) -> list[Problem]:
    # include_input=False: the input may be a private key or a password.
    problems = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
        problems.append(Problem(label, path.lstrip(".") or "config", error["msg"]))
    return problems


def _validate_one(raw: Any, now: datetime, roots: TrustedRoots | None) -> tuple[Route, list[tuple[str, str]]]:
    key = _content_key(raw)
    route = _validated_contents.get(key, _validate_content) if key is not None else _validate_config(raw)
    certificate = route.certificate
    warnings = []
    if now < certificate.not_before:
        warnings.append(("publicKey", f"certificate is not valid before {certificate.not_before.isoformat()}"))
    if now > certificate.not_after:
        warnings.append(("publicKey", f"certificate expired at {certificate.not_after.isoformat()}"))
    if roots is not None and (chain := chain_warning(certificate, roots)) is not None:
        warnings.append(("publicKey", chain))
    return route, warnings


_ContentKey = tuple[str, tuple[str, ...], tuple[int, ...], str, str, tuple[str, str, str] | None]
_validated_contents: SetCache[_ContentKey, Route] = SetCache()


def _content_key(raw: Any) -> _ContentKey | None:
    """The fields of a well-typed config as a hashable key, or None to take the full (pydantic) path.

    Coreflow resends every unchanged host on every update: at 10,000 hosts, finding each one here instead of
    validating it again saves most of the driver's work. Only exact types qualify, so the cached result is the
    one the full path would give.
    """
    if type(raw) is not dict:
        return None
    name, ips, ports = raw.get("hostName"), raw.get("destinationIps"), raw.get("destinationPorts")
    key, cert, auth = raw.get("privateKey"), raw.get("publicKey"), raw.get("authentication")
    if not (type(name) is str and type(key) is str and type(cert) is str and type(ips) is list and type(ports) is list):
        return None
    if not (all(type(ip) is str for ip in ips) and all(type(port) is int for port in ports)):
        return None
    auth_key = None
    if auth is not None:
        if type(auth) is not dict:
            return None
        auth_key = (auth.get("type"), auth.get("user"), auth.get("pass"))
        if not all(type(part) is str for part in auth_key):
            return None
    return (name, tuple(ips), tuple(ports), key, cert, auth_key)  # type: ignore[return-value]


def _validate_content(key: _ContentKey) -> Route:
    name, ips, ports, private_key, public_key, auth = key
    raw: dict[str, Any] = {
        "hostName": name,
        "destinationIps": list(ips),
        "destinationPorts": list(ports),
        "privateKey": private_key,
        "publicKey": public_key,
    }
    if auth is not None:
        raw["authentication"] = {"type": auth[0], "user": auth[1], "pass": auth[2]}
    return _validate_config(raw)


def _validate_config(raw: Any) -> Route:
    """Everything about one config that does not depend on the clock.

    Raises an ExceptionGroup of every FieldError found: the checks that do not depend on each other all run, so
    one round of fixes can mend a config.
    """
    config = ReverseProxyConfig.model_validate(raw)
    errors: list[FieldError] = []
    key_pem = config.private_key.get_secret_value()
    host = _collect(errors, normalise_host_name, config.host_name)
    upstreams = _collect(errors, _upstreams, config.destination_ips, config.destination_ports)
    certificate = _collect(errors, check_pem_pair, config.public_key, key_pem)
    if host is not None and certificate is not None and not any(_name_covers(n, host) for n in certificate.names):
        errors.append(
            FieldError(
                "publicKey",
                f"certificate does not cover {host} (it names {', '.join(certificate.names) or 'nothing'})",
            )
        )
    basic_auth = None
    if config.authentication is not None:
        basic_auth = _collect(errors, _basic_auth, config.authentication, key_pem)
    if errors:
        raise ExceptionGroup("invalid config", errors)
    assert host is not None and upstreams is not None and certificate is not None
    return Route(host, upstreams, certificate.chain_pem, key_pem, certificate, basic_auth)


def _collect(errors: list[FieldError], check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """`check(...)`, or None with its FieldError (or several) added to `errors`."""
    try:
        return check(*args, **kwargs)
    except FieldError as exc:
        errors.append(exc)
    except ExceptionGroup as group:  # raised here of FieldErrors only
        errors.extend(e for e in group.exceptions if isinstance(e, FieldError))
    return None


def _basic_auth(authentication: BasicAuthentication, key_pem: str) -> BasicAuth:
    user = authentication.user
    password = authentication.password.get_secret_value()
    errors = []
    if not user:
        errors.append(FieldError("authentication.user", "must not be empty"))
    elif ":" in user or not user.isprintable() or "{" in user or "}" in user:
        errors.append(FieldError("authentication.user", "must be printable, without ':', '{' or '}'"))
    if not password:
        errors.append(FieldError("authentication.pass", "must not be empty"))
    elif len(password.encode()) > 72:
        errors.append(FieldError("authentication.pass", "is longer than 72 bytes, more than bcrypt can check"))
    if errors:
        raise ExceptionGroup("invalid authentication", errors)
    return BasicAuth(user, password, hashlib.sha256(key_pem.encode()).digest())


@functools.lru_cache(maxsize=1 << 18)  # the same names come in every set: room for all of 100,000 hosts
def host_or_label(label: str) -> str:
    """The host a label names, as routes name it; a label that is no host name (`#3`, `not a host`) as it is."""
    try:
        return normalise_host_name(label)
    except FieldError:
        return label


def normalise_host_name(name: str) -> str:
    """A DNS name as Caddy should match it: lower case, A-labels, optionally one leading `*.`."""
    wildcard = name.startswith("*.")
    rest = name[2:] if wildcard else name
    if not rest.isascii():
        try:
            rest = idna.encode(rest, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise FieldError("hostName", "is not a valid internationalised domain name") from None
    rest = rest.lower()
    if not rest or len(rest) > 253 - (2 if wildcard else 0):
        raise FieldError("hostName", "must be a DNS name of 1 to 253 characters")
    # Only an IPv4 address ends in a digit and only an IPv6 one holds ':'; parsing every name as both costs
    # as much as the rest of this function.
    if (rest[-1].isdigit() or ":" in rest) and _is_ip(rest):
        raise FieldError("hostName", "is an IP address; TLS needs a DNS name to select the certificate")
    if rest.rpartition(".")[2].isdigit():  # `999.1.1.1`: no top-level domain is all digits (RFC 3696 2)
        raise FieldError("hostName", "ends in an all-numeric label: neither a DNS name nor an IP address")
    for part in rest.split("."):
        if not _LABEL.fullmatch(part):
            raise FieldError(
                "hostName",
                "must be a DNS name: labels of 1-63 letters, digits or '-', no port, path, spaces or '{}'",
            )
    return f"*.{rest}" if wildcard else rest


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _upstreams(ips: Sequence[str], ports: Sequence[int]) -> tuple[str, ...]:
    errors = []
    if not ips:
        errors.append(FieldError("destinationIps", "must list at least one address"))
    if not ports:
        errors.append(FieldError("destinationPorts", "must list at least one port"))
    hosts = [_collect(errors, _dial_host, ip, i) for i, ip in enumerate(ips)]
    errors += [
        FieldError(f"destinationPorts[{i}]", f"{port} is not a port (1-65535)")
        for i, port in enumerate(ports)
        if not 1 <= port <= 65535
    ]
    if errors:
        raise ExceptionGroup("invalid upstreams", errors)
    # Every address x every port, each once, sorted: the same upstreams in another order or with repeats are the
    # same set to Caddy (round robin spreads requests evenly either way), so they render the same and cost no reload.
    return tuple(sorted({f"{host}:{port}" for host in hosts for port in ports}))


@functools.lru_cache(maxsize=65536)
def _dial_host(text: str, index: int) -> str:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        # Caddy expands placeholders in a dial address: an IPv6 zone may only be an interface name.
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id and not _ZONE.fullmatch(address.scope_id):
            raise FieldError(f"destinationIps[{index}]", "has an IPv6 zone that is not an interface name")
        return f"[{address}]" if address.version == 6 else str(address)
    try:
        name = normalise_host_name(bare)
    except FieldError:
        name = "*"
    if name.startswith("*"):
        raise FieldError(f"destinationIps[{index}]", "must be an IPv4/IPv6 address or a DNS name")
    return name


def _name_covers(pattern: str, host: str) -> bool:
    """RFC 6125 matching: exact, or a leading `*` label that stands for exactly one label."""
    pattern = pattern.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and not host.startswith("*."):
        head, _, tail = host.partition(".")
        return bool(head) and tail == pattern[2:]
    return False
