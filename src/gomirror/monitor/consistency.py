"""monitor.consistency probes every mirror, compares what they serve, and reports drift.

``ConsistencyMonitor`` is a background task (``run()``: a round every
``interval`` seconds until cancelled; it never raises out, it logs) and
``probe_once()`` is one round. It talks to the *raw* mirrors (``HttpUpstream``,
no verifying wrapper), so it sees what each one really serves. A round:

1. The watch set: ``watch()`` (config modules plus the most requested ones),
   plus modules that still have open findings, private modules left out.
2. Every mirror is asked ``@v/list`` and ``@latest`` of each module; the
   candidates are the newest ``@latest`` plus the ``depth`` newest versions of
   the union of lists, plus versions with open findings. Every mirror is asked
   ``.info`` and ``.mod`` of each candidate (and the ``.zip`` when
   ``probe_zips``; a zip once verified for a mirror is not fetched again).
3. Comparisons. *Tamper*: a ``.mod`` (or zip) ``h1:`` the checksum database
   contradicts (``verifier.check`` raises ``ChecksumMismatch``): a finding
   naming the mirror, and ``Health.mark_untrusted``. *Lag*: a candidate some
   mirror serves and the database does not contradict, which another mirror
   lacks (``.info`` 404, missing from its list, or an older ``@latest``): a
   finding whose ``first_seen`` is when it was first seen missing; it is
   resolved when the mirror catches up, and ``Health.set_lagging`` follows the
   open lag findings. *Info mismatch*: ``.info`` ``Version``/``Time`` of one
   version differing between mirrors; the mirrors outside the majority are
   named (no majority: one finding without a mirror).
4. Health: every probe's outcome and latency goes into the mirror's
   ``Health`` record (kind ``small``; ``zip`` for zips); a probe slower than
   ``healthy_threshold`` counts as slow in the round's statistics. A mirror that
   fails ``abandon_after`` probes in a row (or its first, if it was ``down``)
   is not asked again this round: its answers are unknown, never "missing".
5. Alerts (``AlertSink``, de-duplicated by the sink): mirror down (from the
   health state after the round) and recovered, lag longer than
   ``lag_alert_after``, tamper, checksum database unreachable or inconsistent;
   each resolved when its condition clears.

Concurrency is bounded and fair: each mirror has its own ``per_mirror``
semaphore (a slow mirror only waits for itself), and at most
``module_concurrency`` modules are compared at once. Reads for the status
page (``snapshot()``, ``lag_seconds()``) are synchronous and do no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gomirror.errors import (
    GomirrorError,
    Gone,
    InvalidContent,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from gomirror.module.modzip import check_zip
from gomirror.module.paths import check_path, match_prefix_patterns
from gomirror.monitor.alerts import Alert
from gomirror.monitor.consistency_alerts import duration, wanted_alerts
from gomirror.monitor.drift import (
    INVALID,
    Action,
    Got,
    Seen,
    SumCheck,
    candidates,
    compare,
    latest_repr,
    worst,
)
from gomirror.monitor.findings import Finding, FindingStore
from gomirror.monitor.probes import (
    any_info,
    first_line,
    latest_parser,
    mod_parser,
    parse_list_answer,
    sum_check,
)
from gomirror.monitor.views import MirrorRound, ModuleView, MonitorSnapshot, missing_versions
from gomirror.upstream.base import Fetched, Upstream
from gomirror.upstream.health import HealthBook, OpKind
from gomirror.upstream.verified import Verifier

log = logging.getLogger(__name__)
T = TypeVar("T")

ProbeHook = Callable[[str, str, str, float], None]  # mirror, op, outcome, seconds
# Bigger answers are parsed in a worker thread (as upstream.verified checks them): a
# mirror's 16 MiB @v/list or .info must not stall every client while it is parsed.
INLINE_PARSE_BYTES = 64 << 10
FindingHook = Callable[[Finding], None]  # called when a finding opens


async def parse_off_loop(parse: Callable[[Fetched], Awaitable[T]], fetched: Fetched) -> T:
    """``parse(fetched)``, inline for a small body, else on a private loop in a worker thread.

    Probe parsers are pure functions of the answer (no I/O, nothing bound to the
    serving loop), so running one on another thread's loop is safe.
    """
    if len(fetched.body) <= INLINE_PARSE_BYTES:
        return await parse(fetched)

    async def call() -> T:
        return await parse(fetched)

    def run() -> T:
        return asyncio.run(call())  # the coroutine is made in the thread: never left unawaited

    return await asyncio.to_thread(run)


class AlertSink(Protocol):
    """Where alerts go (``monitor.alerts.Alerter`` is one); both calls must not block."""

    def fire(self, alert: Alert) -> object: ...

    def resolve(self, key: str, *, text: str = "") -> object: ...


# --- one round's working state ----------------------------------------------------------------


@dataclass
class _Slot:
    """One mirror during one round."""

    upstream: Upstream
    sem: asyncio.Semaphore
    tentative: bool  # it was down when the round began
    failures_in_row: int = 0
    abandoned: bool = False
    probes: int = 0
    errors: int = 0
    slow: int = 0
    seconds: list[float] = field(default_factory=list)
    last_error: str = ""

    @property
    def name(self) -> str:
        return self.upstream.name

    def skipped(self) -> bool:
        # A method, not an attribute test: it changes while a probe waits for the semaphore.
        return self.abandoned


@dataclass
class _Round:
    slots: list[_Slot]
    sum_ok: int = 0
    sum_unreachable: int = 0
    sum_inconsistent: int = 0
    sum_error: str = ""


class ConsistencyMonitor:
    """Probes mirrors and records drift (see the module docstring)."""

    def __init__(
        self,
        mirrors: Sequence[Upstream],
        *,
        health: HealthBook,
        verifier: Verifier,
        findings: FindingStore,
        alerter: AlertSink | None = None,
        watch: Callable[[], Iterable[str]] = list,
        interval: float = 300.0,
        probe_zips: bool = False,
        healthy_threshold: float = 0.5,
        lag_alert_after: float = 600.0,
        depth: int = 2,
        per_mirror: int = 2,
        module_concurrency: int = 4,
        probe_timeout: float = 30.0,
        abandon_after: int = 3,
        first_delay: float = 30.0,
        tmp_path: Callable[[], Path] | None = None,
        on_probe: ProbeHook | None = None,
        on_finding: FindingHook | None = None,
        private: str = "",
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mirrors = list(mirrors)
        self._health = health
        self._verifier = verifier
        self._findings = findings
        self._alerter = alerter
        self._watch = watch
        self.interval = interval
        self._probe_zips = probe_zips
        self._healthy = healthy_threshold
        self._lag_alert_after = lag_alert_after
        self._depth = depth
        self._per_mirror = max(1, per_mirror)
        self._module_concurrency = max(1, module_concurrency)
        self._probe_timeout = probe_timeout
        self._abandon_after = max(1, abandon_after)
        self._first_delay = first_delay
        self._tmp_path = tmp_path
        self._on_probe = on_probe
        self._on_finding = on_finding
        self._private = private
        self._clock = clock
        self._timer = timer
        self._views: dict[str, ModuleView] = {}
        self._mirror_rounds: dict[str, MirrorRound] = {}
        self._zips_ok: dict[tuple[str, str, str], None] = {}  # (mirror, module, version), bounded
        self._alerts: set[str] = set()  # keys this monitor has fired and not resolved
        self._sumdb = "unknown"
        self._sumdb_error = ""
        self.rounds = 0
        self.last_round_at: float | None = None
        self.last_round_seconds: float | None = None
        self._round_done = asyncio.Condition()

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Probe every ``interval`` seconds until cancelled; a failing round is logged."""
        if self._first_delay > 0:
            await asyncio.sleep(self._first_delay)
        while True:
            started = self._timer()
            try:
                await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor round failed")
            # A round longer than the interval is followed by a short pause, not another at once.
            pause = min(1.0, self.interval)
            await asyncio.sleep(max(pause, self.interval - (self._timer() - started)))

    async def wait_rounds(self, n: int) -> None:
        """Wait until at least n rounds have finished (for tests and start-up checks)."""
        async with self._round_done:
            await self._round_done.wait_for(lambda: self.rounds >= n)

    async def probe_once(self) -> None:
        """One full round: probe, compare, record findings, update health and alerts."""
        await self._findings.ensure_loaded()
        started_at, t0 = self._clock(), self._timer()
        modules = self._modules()
        rnd = _Round(
            [
                _Slot(m, asyncio.Semaphore(self._per_mirror), self._health.get(m.name).down)
                for m in self._mirrors
            ]
        )
        sem = asyncio.Semaphore(self._module_concurrency)

        async def one(module: str) -> None:
            async with sem:
                try:
                    await self._module(rnd, module)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("monitor module failed", extra={"mod": module})

        await asyncio.gather(*(one(m) for m in modules))
        now = self._clock()
        await self._resolve_unwatched(set(modules), now)
        await self._sumdb_state(rnd, now)
        self._update_lagging(now)
        self._update_alerts(now)
        for s in rnd.slots:
            self._mirror_rounds[s.name] = MirrorRound.of(
                s.name,
                self._health.get(s.name).state,
                s.probes,
                s.errors,
                s.slow,
                s.seconds,
                s.last_error,
                s.abandoned,
            )
        for gone in set(self._views) - set(modules):
            del self._views[gone]
        took = self._timer() - t0
        log.info(
            "monitor round done",
            extra={
                "modules": len(modules),
                "seconds": round(took, 3),
                "open_findings": len(self._findings.open()),
            },
        )
        async with self._round_done:
            self.rounds += 1
            self.last_round_at = started_at
            self.last_round_seconds = took
            self._round_done.notify_all()

    def _modules(self) -> list[str]:
        wanted = list(self._watch())
        # Keep following modules with open problems, so they get resolved (or not).
        wanted += [f.module for f in self._findings.open() if f.module]
        out: list[str] = []
        for m in dict.fromkeys(wanted):
            if match_prefix_patterns(self._private, m):
                continue
            try:
                check_path(m)
            except GomirrorError:
                continue
            out.append(m)
        return out

    # --- probing ------------------------------------------------------------------------

    async def _probe(
        self,
        slot: _Slot,
        op: str,
        call: Callable[[], Awaitable[Fetched]],
        parse: Callable[[Fetched], Awaitable[T]],
        kind: OpKind = "small",
    ) -> Got[T]:
        """Ask one mirror one thing; record the outcome in its health; never raises."""
        if slot.skipped():
            return Got(error="not asked: failing this round")
        async with slot.sem:
            if slot.skipped():
                return Got(error="not asked: failing this round")
            health = self._health.get(slot.name)
            slot.probes += 1
            t0 = self._timer()
            outcome = "ok"
            try:
                # A zip may be large: its transfer is bounded by the mirror's read timeout.
                async with asyncio.timeout(self._probe_timeout if kind == "small" else None):
                    fetched = await call()
                seconds = fetched.elapsed if fetched.elapsed is not None else self._timer() - t0
                value = await parse_off_loop(parse, fetched)
            except NotFound as e:
                outcome = "gone" if isinstance(e, Gone) else "not_found"
                health.record_answer(kind, self._timer() - t0)
                slot.failures_in_row = 0
                return Got(missing=True)
            except TimeoutError:
                outcome = "timeout"
                return self._failed(slot, f"{slot.name}: probe timed out", timeout=True)
            except InvalidContent as e:
                outcome = "invalid_content"
                return self._failed(slot, first_line(e), invalid=True)
            except UpstreamError as e:
                outcome = "timeout" if isinstance(e, UpstreamTimeout) else "error"
                return self._failed(
                    slot,
                    first_line(e),
                    timeout=isinstance(e, UpstreamTimeout),
                    retry_after=e.retry_after if isinstance(e, RateLimited) else None,
                )
            except (GomirrorError, OSError) as e:
                outcome = "error"
                return self._failed(slot, f"{slot.name}: {first_line(e)}")
            finally:
                if self._on_probe is not None:
                    self._on_probe(slot.name, op, outcome, self._timer() - t0)
            health.record_success(kind, seconds)
            slot.failures_in_row = 0
            slot.seconds.append(seconds)
            if kind == "small" and seconds > self._healthy:
                slot.slow += 1
            return Got(value=value)

    def _failed(
        self,
        slot: _Slot,
        reason: str,
        *,
        timeout: bool = False,
        retry_after: float | None = None,
        invalid: bool = False,
    ) -> Got[Any]:
        self._health.get(slot.name).record_failure(reason, timeout=timeout, retry_after=retry_after)
        slot.errors += 1
        slot.failures_in_row += 1
        slot.last_error = reason[:300]
        if slot.tentative or slot.failures_in_row >= self._abandon_after:
            slot.abandoned = True
        log.warning("monitor probe failed", extra={"upstream": slot.name, "reason": reason[:200]})
        return Got(error=(INVALID if invalid else "") + reason)

    async def _module(self, rnd: _Round, module: str) -> None:
        seen = {slot.name: Seen() for slot in rnd.slots}

        async def heads(slot: _Slot) -> None:
            s = seen[slot.name]
            s.listed, s.latest = await asyncio.gather(
                self._probe(slot, "list", lambda: slot.upstream.list(module), parse_list_answer),
                self._probe(
                    slot, "latest", lambda: slot.upstream.latest(module), latest_parser(module)
                ),
            )

        await asyncio.gather(*(heads(slot) for slot in rnd.slots))
        open_before = self._findings.open(module=module)
        versions = candidates(seen, self._depth, (f.version for f in open_before if f.version))

        async def deep(slot: _Slot, v: str) -> None:
            s = seen[slot.name]
            s.info[v], s.mod[v] = await asyncio.gather(
                self._probe(slot, "info", lambda: slot.upstream.info(module, v), any_info),
                self._probe(
                    slot, "mod", lambda: slot.upstream.mod(module, v), mod_parser(module, v)
                ),
            )
            h1 = s.mod[v].value
            if h1 is not None:
                s.sums[v] = await sum_check(self._verifier, module, v, "mod", h1)
                self._count_sum(rnd, s.sums[v])
                if self._probe_zips:
                    await self._zip(rnd, slot, module, v, s)

        await asyncio.gather(*(deep(slot, v) for slot in rnd.slots for v in versions))
        now = self._clock()
        actions, newest = compare(module, versions, seen, open_before, now)
        for action in actions:
            if action.op == "observe" and action.type == "tamper":
                self._health.get(action.mirror).mark_untrusted(action.text)
            await self._apply(action, now)
        self._views[module] = ModuleView(
            path=module,
            newest=newest,
            latest={name: latest_repr(s.latest) for name, s in seen.items()},
            sumdb={v: worst(s.sums.get(v) for s in seen.values()) for v in versions},
            missing=missing_versions(self._findings.open("lag", module=module)),
            checked_at=now,
        )

    async def _zip(self, rnd: _Round, slot: _Slot, module: str, version: str, s: Seen) -> None:
        key = (slot.name, module, version)
        if key in self._zips_ok:
            return
        dst = self._new_tmp()
        try:

            async def parse(_f: Fetched) -> str:
                return (await asyncio.to_thread(check_zip, dst, module, version)).h1

            got = await self._probe(
                slot, "zip", lambda: slot.upstream.zip(module, version, dst), parse, kind="zip"
            )
        finally:
            with contextlib.suppress(OSError):
                dst.unlink()
        s.zip[version] = got
        if got.value is None:
            return
        check = s.zips[version] = await sum_check(self._verifier, module, version, "zip", got.value)
        self._count_sum(rnd, check)
        if check.state in ("verified", "skipped"):
            self._zips_ok[key] = None
            while len(self._zips_ok) > 10_000:
                del self._zips_ok[next(iter(self._zips_ok))]

    def _new_tmp(self) -> Path:
        if self._tmp_path is not None:
            return self._tmp_path()
        fd, name = tempfile.mkstemp(prefix="gomirror-probe-", suffix=".zip")
        os.close(fd)
        return Path(name)

    @staticmethod
    def _count_sum(rnd: _Round, check: SumCheck) -> None:
        if check.state in ("verified", "skipped", "mismatch", "unknown"):
            rnd.sum_ok += 1  # the database answered
        elif check.state == "unreachable":
            rnd.sum_unreachable += 1
            rnd.sum_error = rnd.sum_error or check.detail
        else:
            rnd.sum_inconsistent += 1
            rnd.sum_error = check.detail

    # --- recording ----------------------------------------------------------------------

    async def _apply(self, action: Action, now: float) -> None:
        ident = {
            "mirror": action.mirror,
            "module": action.module,
            "version": action.version,
            "aspect": action.aspect,
        }
        if action.op == "resolve":
            await self._findings.resolve(action.type, **ident, note=action.text, now=now)
            return
        f, new = await self._findings.observe(
            action.type, **ident, said=action.said, detail=action.text, now=now
        )
        if new:
            log.warning(
                "monitor finding",
                extra={
                    "finding": f.type,
                    "upstream": f.mirror,
                    "mod": f.module,
                    "version": f.version,
                    "detail": f.detail[:200],
                },
            )
            if self._on_finding is not None:
                self._on_finding(f)

    async def _resolve_unwatched(self, modules: set[str], now: float) -> None:
        """Close findings nobody will check again: module unwatched, or mirror removed."""
        names = {m.name for m in self._mirrors}
        for f in self._findings.open():
            if f.module and f.module not in modules:
                note = "no longer watched"
            elif f.mirror and f.mirror not in names:
                note = "mirror no longer configured"
            else:
                continue
            await self._findings.resolve(
                f.type,
                mirror=f.mirror,
                module=f.module,
                version=f.version,
                aspect=f.aspect,
                note=note,
                now=now,
            )

    async def _sumdb_state(self, rnd: _Round, now: float) -> None:
        if rnd.sum_inconsistent:
            state = "inconsistent"
        elif rnd.sum_unreachable and not rnd.sum_ok:
            state = "unreachable"
        elif rnd.sum_ok and not rnd.sum_unreachable:
            state = "ok"
        else:
            return  # nothing checked, or mixed answers: keep what we knew
        self._sumdb, self._sumdb_error = state, rnd.sum_error if state != "ok" else ""
        for kind in ("sumdb_unreachable", "sumdb_inconsistent"):
            if kind == f"sumdb_{state}":
                said = {"error": rnd.sum_error}
                text = f"checksum database {state}: {rnd.sum_error}"
                await self._apply(Action("observe", kind, said=said, text=text), now)
            else:
                await self._apply(Action("resolve", kind, text="checksum database answers"), now)

    # --- health and alerts --------------------------------------------------------------

    def _update_lagging(self, now: float) -> None:
        for m in self._mirrors:
            open_lag = self._findings.open("lag", mirror=m.name)
            h = self._health.get(m.name)
            if open_lag:
                f = open_lag[0]
                more = f" (+{len(open_lag) - 1} more)" if len(open_lag) > 1 else ""
                h.set_lagging(
                    True, f"lacks {f.module}@{f.version} for {duration(now - f.first_seen)}{more}"
                )
            else:
                h.set_lagging(False)

    def _update_alerts(self, now: float) -> None:
        if self._alerter is None:
            return
        mirrors = {m.name: self._health.get(m.name) for m in self._mirrors}
        wanted = wanted_alerts(mirrors, self._findings.open(), now, self._lag_alert_after)
        for alert in wanted.values():
            self._alerter.fire(alert)
        for key in self._alerts - set(wanted):
            text = "recovered" if key.startswith("mirror_down:") else "resolved"
            self._alerter.resolve(key, text=text)
        self._alerts = set(wanted)

    # --- reading (no I/O) ---------------------------------------------------------------

    def lag_seconds(self, mirror: str, module: str) -> float:
        """How long mirror has lacked a version of module others have (0: it does not)."""
        now = self._clock()
        fs = self._findings.open("lag", mirror=mirror, module=module)
        return max((now - f.first_seen for f in fs), default=0.0)

    def lags(self) -> dict[tuple[str, str], float]:
        """(mirror, module) -> lag seconds, for every open lag (for a metrics collector)."""
        now = self._clock()
        out: dict[tuple[str, str], float] = {}
        for f in self._findings.open("lag"):
            k = (f.mirror, f.module)
            out[k] = max(out.get(k, 0.0), now - f.first_seen)
        return out

    def snapshot(self, findings: int = 50) -> MonitorSnapshot:
        """What the status page shows: modules, mirrors, findings, round times."""
        return MonitorSnapshot(
            rounds=self.rounds,
            interval=self.interval,
            last_round_at=self.last_round_at,
            last_round_seconds=self.last_round_seconds,
            sumdb=self._sumdb,
            sumdb_error=self._sumdb_error,
            modules=tuple(self._views[m] for m in sorted(self._views)),
            mirrors=tuple(
                self._mirror_rounds.get(m.name)
                or MirrorRound(m.name, self._health.get(m.name).state)
                for m in self._mirrors
            ),
            findings=tuple(self._findings.recent(findings)),
        )


# --- small helpers ----------------------------------------------------------------------------
