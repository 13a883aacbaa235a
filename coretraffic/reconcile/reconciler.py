"""The reconciler: the one place that owns time, retries and the state "what Caddy runs now".

Sources (the routes file, Coreflow) `submit` a validated route set and may await the apply that covered it.
- Coalescing: at most one `/load` in flight and one set pending; a newer set replaces the pending one (its
  submitters then get the newer set's result), so a burst costs at most a few loads and the newest set wins.
- Skip unchanged: the rendered bytes equal what was applied and Caddy still runs it -> no reload (a reload
  closes every idle keep-alive connection).
- Retry: Caddy unreachable, timing out or answering 5xx is retried with capped, jittered exponential backoff
  (tenacity) for as long as it takes; a newer set takes over from the one being retried.
- One load at a time: a load whose answer never came (timeout, dropped connection) may still be running in Caddy,
  so it is not sent again blindly. Caddy serialises reads with config changes: asking for the set's marker `@id`
  waits behind the running load, and its answer decides: there, the set is applied; not there, it is loaded again
  (or a newer set that arrived meanwhile is).
- Per-host isolation: when Caddy rejects a config, the hosts its error points at are dropped with Caddy's reason
  and the rest is applied; an error that points at no host fails the apply and the last good config keeps
  serving, so hosts are never lost for an unrelated bad one.
- Self-heal: every second it checks that Caddy still holds the config's marker `@id` (restart, emptied, replaced),
  and now and then compares the whole config's ETag (edits by hand); either way it re-applies.
- Admin address: every load carries its Caddy's (`render.with_admin_listen`); render leaves it out, and a load
  without it would move Caddy's admin API to localhost:2019.
- Foreign parts: servers and apps that someone else put into Caddy are read before the first load and after any
  change coretraffic did not make, and carried into every load unchanged (`ownership`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from coretraffic.caddy.admin import CaddyAdmin
from coretraffic.caddyjson.layout import JSON, config_id, culprits
from coretraffic.caddyjson.ownership import Parts, foreign_parts, keep_foreign
from coretraffic.caddyjson.render import serialise, with_admin_listen
from coretraffic.caddyjson.withheld import with_withheld
from coretraffic.core.gc_pause import collector_paused
from coretraffic.core.text import counted
from coretraffic.core.validate import Problem, Route, Validation
from coretraffic.errors import CaddyRejected, CaddyUnavailable, LoadInDoubt

log = logging.getLogger("coretraffic.reconciler")

Outcome = Literal["applied", "unchanged", "failed"]
ConfigRenderer = Callable[[Sequence[Route]], JSON]
ResultObserver = Callable[["ApplyResult", Validation], None]

_MAX_ISOLATION_ROUNDS = 20
T = TypeVar("T")


@dataclass(frozen=True)
class ApplyResult:
    """The truth about one apply, as told to whoever submitted the set."""

    outcome: Outcome
    applied_hosts: tuple[str, ...]
    rejected: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    duration_s: float
    caddy_answer: str
    stale: tuple[str, ...] = ()  # served by their last good version: their new config was refused
    held_back: str = ""  # why hosts the set removes keep serving ("": nothing held back)

    @property
    def ok(self) -> bool:
        return self.outcome != "failed" and not self.rejected and not self.held_back

    def summary(self) -> str:
        rejected = sorted({p.host for p in self.rejected})
        text = (
            f"{self.outcome}: {counted(len(self.applied_hosts), 'host')} served, {len(rejected)} rejected, "
            f"{counted(len(self.warnings), 'warning')}, {self.duration_s:.3f} s, caddy: {self.caddy_answer}"
        )
        text += f"; rejected: {', '.join(rejected[:20])}" if rejected else ""
        text += f"; stale (last good version serving): {', '.join(self.stale[:20])}" if self.stale else ""
        return text + (f"; {self.held_back}" if self.held_back else "")


@dataclass
class _Submission:
    validation: Validation
    force: bool = False
    waiters: list[asyncio.Future[ApplyResult]] = field(default_factory=list)


@dataclass(frozen=True)
class _Applied:
    validation: Validation
    body: bytes
    marker: str | None
    etag: str

    @functools.cached_property
    def hosts_by_upstream(self) -> dict[str, tuple[str, ...]]:
        by_upstream: dict[str, list[str]] = {}
        for route in self.validation.routes:
            for dial in route.upstreams:
                by_upstream.setdefault(dial, []).append(route.host)
        return {dial: tuple(hosts) for dial, hosts in by_upstream.items()}


class Reconciler:
    def __init__(
        self,
        admin: CaddyAdmin,
        render_config: ConfigRenderer,
        *,
        heal_interval: float = 1.0,
        on_result: ResultObserver | None = None,
    ) -> None:
        self._admin = admin
        self._name = admin.address.name  # which Caddy the log lines are about, when there are several
        self._render = render_config
        self._heal_interval = heal_interval
        self._on_result = on_result
        self._pending: _Submission | None = None
        self._wake = asyncio.Event()
        self._applied: _Applied | None = None
        # Caddy's foreign servers and apps as last read; None: read them before the next load.
        self._foreign: Parts | None = None
        # True from taking a set until its apply is fully recorded: a heal check must not judge Caddy meanwhile.
        self._applying = False
        self.last_result: ApplyResult | None = None
        self._has_result = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.loads = 0
        self.retries = 0
        self.heals = 0
        # Why Caddy has not answered the set being applied (the last retried error); "" once an apply ends.
        self.unavailable_because = ""
        # When the self-heal found Caddy no longer running the applied config (monotonic); None once re-applied.
        self.drifted_at: float | None = None

    # -- sources' side -------------------------------------------------------------------------------------

    def submit_nowait(self, validation: Validation, *, force: bool = False) -> asyncio.Future[ApplyResult]:
        """Queue a set (replacing any pending one) and return a future for the apply that covers it."""
        future: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        replaced = self._pending
        self._pending = _Submission(validation, force or bool(replaced and replaced.force), [future])
        if replaced is not None:
            self._pending.waiters.extend(replaced.waiters)
        self._idle.clear()
        self._wake.set()
        return future

    async def submit(self, validation: Validation) -> ApplyResult:
        return await self.submit_nowait(validation)

    async def wait_idle(self) -> None:
        """Until nothing is pending and no apply is running."""
        await self._idle.wait()

    async def wait_for_result(self) -> ApplyResult:
        """The latest apply's result, waiting for the first one if there is none yet."""
        await self._has_result.wait()
        assert self.last_result is not None
        return self.last_result

    @property
    def foreign_parts(self) -> tuple[str, ...]:
        """The servers and apps in Caddy that are not coretraffic's and are carried over, as last read."""
        return tuple(sorted(self._foreign or ()))

    def hosts_of_upstream(self, address: str) -> tuple[str, ...]:
        """The hosts of the set last applied that have `address` (`ip:port`) among their upstreams."""
        return self._applied.hosts_by_upstream.get(address, ()) if self._applied else ()

    @property
    def applied_marker(self) -> str | None:
        """The `@id` marking the config last applied: Caddy holding it means Caddy runs that config."""
        return self._applied.marker if self._applied else None

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._apply_loop())
            tasks.create_task(self._heal_loop())

    async def _apply_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            submission, self._pending = self._pending, None
            if submission is None:
                continue
            self._applying = True
            try:
                result = await self._apply(submission)
            finally:
                self._applying = False
            if result is None:  # superseded while Caddy was unreachable: the newer set answers for both
                assert self._pending is not None
                self._pending.waiters.extend(submission.waiters)
                continue
            self.last_result = result
            self.unavailable_because = ""
            if result.outcome != "failed":
                self.drifted_at = None
            self._has_result.set()
            if self._on_result is not None:
                try:
                    self._on_result(result, submission.validation)
                except Exception:  # an observer (metrics) must never stop routes from being applied
                    log.exception("apply result observer failed")
            log.log(logging.INFO if result.ok else logging.WARNING, "apply %s (%s)", result.summary(), self._name)
            for waiter in submission.waiters:
                if not waiter.done():
                    waiter.set_result(result)
            if self._pending is None:
                self._idle.set()

    async def _apply(self, submission: _Submission) -> ApplyResult | None:
        started = time.monotonic()
        validation = submission.validation
        routes = list(validation.routes)
        isolated: list[Problem] = []
        for _ in range(_MAX_ISOLATION_ROUNDS):
            try:
                if self._foreign is None:
                    self._foreign = await self._retrying(self._read_foreign)
                foreign = self._foreign
                # Rendering hashes new passwords and serialising 10,000 routes takes a while: off the event loop.
                # Refused hosts a wildcard would take: by validation, or by Caddy in an earlier round (`withheld`).
                withheld = [*validation.refused, *(p.host for p in isolated)]
                config, body, left_out = await asyncio.to_thread(self._render_and_serialise, routes, foreign, withheld)
                for label, reason in left_out.items():
                    log.warning("caddy's %s is not coretraffic's, but is left out of the config: it %s", label, reason)
                    del foreign[label]  # gone from Caddy with this load: said once
                marker = config_id(config)
                if not submission.force and await self._runs_already(body):
                    return self._result("unchanged", routes, validation, isolated, started, "not reloaded")
                answer = await self._retrying(functools.partial(self._load, body, marker))
            except CaddyUnavailable:
                return None
            except CaddyRejected as exc:
                blamed = culprits(exc.error, config, [r.host for r in routes])
                if not blamed:
                    return self._result("failed", [], validation, isolated, started, exc.error)
                isolated.extend(Problem(host, field_, f"Caddy rejected it: {exc.error}") for host, field_ in blamed)
                dropped = {host for host, _ in blamed}
                routes = [r for r in routes if r.host not in dropped]
                continue
            self.loads += 1
            self._applied = _Applied(validation, body, marker, await self._etag())
            return self._result("applied", routes, validation, isolated, started, answer)
        return self._result("failed", [], validation, isolated, started, "too many rejected hosts to isolate")

    async def _load(self, body: bytes, marker: str | None) -> str:
        """Load `body` and return Caddy's answer; a load left in doubt is decided from what Caddy runs."""
        try:
            await self._admin.load(body)
        except LoadInDoubt as exc:
            if marker is None:
                raise
            log.warning("no answer to the load of %s (%s); waiting for caddy to tell whether it landed", marker, exc)
            if not await self._landed(marker, self._admin.load_timeout.for_size(len(body))):
                raise  # it did not land: loaded again, or a newer set is (`_retrying`)
            log.info("the load of %s landed although its answer never came", marker)
            return "no answer to the load, but Caddy runs its marker"
        return "HTTP 200"

    async def _landed(self, marker: str, timeout: httpx.Timeout) -> bool:
        """Whether Caddy runs `marker`, asked until it answers: the question waits behind a load still running."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(CaddyUnavailable),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        return await retrying(functools.partial(self._admin.has_id, marker, timeout))

    def _render_and_serialise(
        self, routes: Sequence[Route], foreign: Parts, withheld: Sequence[str]
    ) -> tuple[JSON, bytes, dict[str, str]]:
        with collector_paused():  # 10,000 routes would set off full collections costlier than the rendering
            rendered = with_withheld(self._render(routes), withheld)
            config = with_admin_listen(rendered, self._admin.address.config_listen)
            config, left_out = keep_foreign(config, foreign)
            return config, serialise(config), left_out

    def _result(
        self,
        outcome: Outcome,
        routes: Sequence[Route],
        validation: Validation,
        isolated: Sequence[Problem],
        started: float,
        answer: str,
    ) -> ApplyResult:
        served = {r.host for r in routes}
        return ApplyResult(
            outcome=outcome,
            applied_hosts=tuple(r.host for r in routes),
            rejected=(*validation.errors, *isolated),
            warnings=validation.warnings,
            duration_s=time.monotonic() - started,
            caddy_answer=answer,
            stale=tuple(host for host in validation.stale if host in served) if outcome != "failed" else (),
            held_back=validation.held_back if outcome != "failed" else "",
        )

    async def _runs_already(self, body: bytes) -> bool:
        applied = self._applied
        if applied is None or applied.body != body or applied.marker is None:
            return False
        try:
            return await self._admin.has_id(applied.marker)
        except CaddyUnavailable:
            return False  # the load below will wait for Caddy

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` until Caddy answers; CaddyUnavailable once a newer set is waiting (it takes over)."""

        def newer_set_waiting(_: RetryCallState) -> bool:
            return self._pending is not None

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(CaddyUnavailable),
            # Capped at 1 s so that a Caddy that answers again gets the set within a second.
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            stop=newer_set_waiting,
            before_sleep=self._note_retry,
            reraise=True,
        )
        return await retrying(call)

    async def _read_foreign(self) -> Parts:
        try:
            foreign = foreign_parts(await self._admin.get_config())
        except CaddyRejected as exc:  # not expected from a read; carrying nothing is what loads did before
            log.warning("could not read caddy's config for parts that are not coretraffic's: %s", exc)
            return {}
        if foreign:
            log.info("caddy runs parts that are not coretraffic's, left as they are: %s", ", ".join(sorted(foreign)))
        return foreign

    def _note_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome is not None else None
        self.unavailable_because = str(error)
        log.warning("caddy %s unavailable (attempt %d), retrying: %s", self._name, state.attempt_number, error)

    async def _etag(self) -> str:
        try:
            return await self._admin.config_etag()
        except (CaddyUnavailable, CaddyRejected):
            return ""

    # -- self-heal -----------------------------------------------------------------------------------------

    async def _heal_loop(self) -> None:
        next_full_check = 0.0
        while True:
            await asyncio.sleep(self._heal_interval)
            applied = self._applied
            if applied is None or applied.marker is None or self._busy():
                continue
            try:
                drifted = not await self._admin.has_id(applied.marker)
                if not drifted and time.monotonic() >= next_full_check:
                    started = time.monotonic()
                    drifted = bool(applied.etag) and await self._admin.config_etag() != applied.etag
                    # The full read costs Caddy ~75 ms at 10,000 routes: keep it to a few percent of its time.
                    next_full_check = time.monotonic() + max(self._heal_interval, 30 * (time.monotonic() - started))
            except (CaddyUnavailable, CaddyRejected):
                continue
            # Judge only what was checked: an apply that began meanwhile makes the answer stale (Caddy may already
            # run the newer set, whose marker differs); re-applying then would put the previous set back.
            if drifted and self._applied is applied and not self._busy():
                self.heals += 1
                self.drifted_at = time.monotonic()
                log.warning(
                    "caddy %s no longer runs the applied config (restarted, emptied or edited); re-applying", self._name
                )
                self._foreign = None  # someone else changed Caddy: what is theirs is read again
                self.submit_nowait(applied.validation, force=True)

    def _busy(self) -> bool:
        return self._applying or self._pending is not None
