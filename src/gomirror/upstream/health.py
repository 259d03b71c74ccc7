"""upstream.health keeps one health record per upstream, shared by the chain, the monitor and the status page.

A ``Health`` record learns from every request an ``ObservedUpstream`` makes and
from every probe the monitor makes: latency (an EWMA and a window of recent
samples per operation kind, ``small`` files and ``zip``, time to first byte),
the success ratio over a sliding window, consecutive failures, the last error
and when. From those it derives a state:

- ``down``: a timeout, a long ``Retry-After``, or ``down_after`` failures in a
  row. A down upstream is skipped until its backoff ends; then one request
  (a probe) is let through; success makes it healthy, failure doubles the
  backoff up to ``max_backoff``;
- ``untrusted``: it served content that failed the checksum database, for
  ``untrusted_for`` seconds; asked only when no trusted upstream can answer;
- ``lagging``: the monitor saw it miss versions the others have;
- ``slow``: its median latency is above ``slow_threshold``;
- ``healthy`` otherwise.

``HealthBook`` owns the records, one per upstream name. Nothing here does I/O
and every method is synchronous: the records are only touched from the event
loop. ``clock`` is injectable so tests control time.

Several instances agree on ``down`` through ``coordination.sharedhealth``: a
record calls its ``on_change`` hook when it goes down or comes back up, and
``adopt`` applies another instance's verdict without calling the hook.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["healthy", "slow", "down", "lagging", "untrusted"]
OpKind = Literal["small", "zip"]
STATES: tuple[State, ...] = ("healthy", "slow", "down", "lagging", "untrusted")
EWMA_ALPHA = 0.3
DEFAULT_LATENCY = 0.25  # what an upstream never measured is assumed to take (seconds)


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Thresholds for the states (see the module docstring); times in seconds."""

    window: int = 50
    slow_threshold: float = 0.5
    down_after: int = 3
    down_backoff: float = 30.0
    max_backoff: float = 300.0
    untrusted_for: float = 3600.0
    samples: int = 100


@dataclass
class _Latency:
    ewma: float | None = None
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=100))

    def add(self, seconds: float) -> None:
        self.ewma = (
            seconds if self.ewma is None else (1 - EWMA_ALPHA) * self.ewma + EWMA_ALPHA * seconds
        )
        self.recent.append(seconds)

    def quantile(self, q: float) -> float | None:
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Health:
    """The health of one upstream (see the module docstring)."""

    def __init__(
        self, name: str, settings: HealthSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._s = settings
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=settings.window)
        self._latency: dict[OpKind, _Latency] = {
            "small": _Latency(recent=deque(maxlen=settings.samples)),
            "zip": _Latency(recent=deque(maxlen=settings.samples)),
        }
        self._ttfb: dict[OpKind, _Latency] = {
            "small": _Latency(recent=deque(maxlen=settings.samples)),
            "zip": _Latency(recent=deque(maxlen=settings.samples)),
        }
        self.consecutive_failures = 0
        self.last_error = ""
        self.last_error_at: float | None = None  # wall-clock time, for people
        self.last_success_at: float | None = None
        self.requests = 0
        self._down_until: float | None = None  # monotonic
        self._down_reason = ""
        self._backoff = settings.down_backoff
        self._probing = False  # a probe of a down upstream is in flight
        self._untrusted_until: float | None = None
        self.untrusted_reason = ""
        self.lagging = False
        self.lagging_reason = ""
        self.history: deque[tuple[float, float]] = deque(maxlen=60)  # (wall time, seconds)
        # Called with (record, down, seconds down, reason) on going down or back up.
        self.on_change: Callable[[Health, bool, float, str], None] | None = None

    # --- what the observer reports ---------------------------------------

    def record_success(self, kind: OpKind, seconds: float, ttfb: float | None = None) -> None:
        self.requests += 1
        self._outcomes.append(True)
        self.consecutive_failures = 0
        self.last_success_at = time.time()
        self._latency[kind].add(seconds)
        self._ttfb[kind].add(seconds if ttfb is None else ttfb)
        self.history.append((time.time(), seconds if ttfb is None else ttfb))
        self._probing = False
        if self._down_until is not None:
            self._down_until = None
            self._down_reason = ""
            self._backoff = self._s.down_backoff
            self._changed(False, 0.0, "")

    def record_failure(
        self, reason: str, *, timeout: bool = False, retry_after: float | None = None
    ) -> None:
        """An answer that was neither content nor "not found": refused, 5xx, timeout, 429."""
        self.requests += 1
        self._outcomes.append(False)
        self.consecutive_failures += 1
        self.last_error = reason[:300]
        self.last_error_at = time.time()
        now = self._clock()
        if self._down_until is not None and not self._probing:
            return  # more fallout of the same outage: it is already down until its backoff ends
        if retry_after is not None and retry_after > 0:
            self._go_down(now, retry_after, "rate limited (429)")
        elif timeout:
            self._go_down(now, self._next_backoff(), "timed out")
        elif self.consecutive_failures >= self._s.down_after or self._probing:
            self._go_down(
                now, self._next_backoff(), f"{self.consecutive_failures} failures in a row"
            )

    def record_answer(self, kind: OpKind, seconds: float) -> None:
        """A definite answer that is not a success ("not found"): the mirror is up."""
        self._outcomes.append(True)
        self.requests += 1
        self.consecutive_failures = 0
        self._latency[kind].add(seconds)
        self._ttfb[kind].add(seconds)
        self._probing = False
        if self._down_until is not None:
            self._down_until = None
            self._backoff = self._s.down_backoff
            self._changed(False, 0.0, "")

    def record_unfinished(self, kind: OpKind, seconds: float, got_first_byte: bool) -> None:
        """A request cancelled because another mirror answered first (a hedge it lost).

        Without a first byte it took *at least* ``seconds``: counting that as a
        latency sample keeps a slow mirror from looking fast just because it
        never gets to finish.
        """
        if not got_first_byte:
            self._ttfb[kind].add(seconds)
            self.history.append((time.time(), seconds))

    def mark_untrusted(self, reason: str) -> None:
        self._untrusted_until = self._clock() + self._s.untrusted_for
        self.untrusted_reason = reason[:300]

    def set_lagging(self, lagging: bool, reason: str = "") -> None:
        self.lagging = lagging
        self.lagging_reason = reason if lagging else ""

    def _next_backoff(self) -> float:
        if self._down_until is None:
            return self._s.down_backoff
        self._backoff = min(self._s.max_backoff, self._backoff * 2)
        return self._backoff

    def _go_down(self, now: float, seconds: float, reason: str) -> None:
        self._down_until = now + seconds
        self._down_reason = reason
        self._probing = False
        self._changed(True, seconds, reason)

    def _changed(self, down: bool, seconds: float, reason: str) -> None:
        if self.on_change is not None:
            self.on_change(self, down, seconds, reason)

    def adopt(self, down: bool, seconds: float = 0.0, reason: str = "") -> None:
        """Take another instance's verdict: down for ``seconds``, or up again. No hook call."""
        if down:
            if self._down_until is None:
                self._down_until = self._clock() + seconds
                self._down_reason = reason[:300]
                self._probing = False
        elif self._down_until is not None and not self._probing:
            self._down_until = None
            self._down_reason = ""
            self._backoff = self._s.down_backoff

    # --- what the chain and the status page read -------------------------

    @property
    def untrusted(self) -> bool:
        return self._untrusted_until is not None and self._clock() < self._untrusted_until

    @property
    def down(self) -> bool:
        return self._down_until is not None

    def skip_reason(self) -> str | None:
        """Why this upstream should not be asked now, or None when it may be.

        When the backoff of a down upstream has run out, one caller gets None
        (the probe) and the next backoff starts, so only one request per
        backoff period reaches a dead mirror.
        """
        if self._down_until is None:
            return None
        now = self._clock()
        if now >= self._down_until:
            self._down_until = now + self._backoff  # let this one through; others wait
            self._probing = True
            return None
        return f"{self._down_reason}, retrying in {self._down_until - now:.0f}s"

    @property
    def state(self) -> State:
        if self.untrusted:
            return "untrusted"
        if self._down_until is not None:
            return "down"
        if self.lagging:
            return "lagging"
        p50 = self._ttfb["small"].quantile(0.5)
        if p50 is not None and p50 > self._s.slow_threshold:
            return "slow"
        return "healthy"

    @property
    def success_ratio(self) -> float | None:
        if not self._outcomes:
            return None
        return sum(self._outcomes) / len(self._outcomes)

    def latency(self, kind: OpKind, q: float) -> float | None:
        """A quantile of recent time-to-first-byte for ``kind`` (None before any sample)."""
        return self._ttfb[kind].quantile(q)

    def score(self) -> float:
        """Expected cost of asking this upstream (lower is better), for ordering."""
        lat = self._ttfb["small"].ewma
        if lat is None:
            lat = self._ttfb["zip"].ewma or DEFAULT_LATENCY
        ratio = self.success_ratio
        failures = 0.0 if ratio is None else 1.0 - ratio
        penalty = 1.0 + 4.0 * failures
        if self._down_until is not None:
            penalty *= 100.0
        return lat * penalty

    def hedge_delay(self, kind: OpKind, floor: float, cap: float) -> float:
        """How long to wait for a first byte before asking another upstream too."""
        p90 = self.latency(kind, 0.9)
        if p90 is None:
            p90 = self.latency("small", 0.9)
        if p90 is None:
            # Never measured: a mirror slower than "slow" is worth racing, even on a cold start.
            p90 = self._s.slow_threshold
        return min(cap, max(floor, p90))

    def snapshot(self) -> dict[str, Any]:
        """The record as plain data, for the status page, metrics and shared state."""
        return {
            "name": self.name,
            "state": self.state,
            "requests": self.requests,
            "success_ratio": self.success_ratio,
            "consecutive_failures": self.consecutive_failures,
            "p50": self.latency("small", 0.5),
            "p90": self.latency("small", 0.9),
            "zip_p50": self.latency("zip", 0.5),
            "zip_p90": self.latency("zip", 0.9),
            "ewma": self._ttfb["small"].ewma,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
            "down_reason": self._down_reason if self._down_until is not None else "",
            "untrusted_reason": self.untrusted_reason if self.untrusted else "",
            "lagging_reason": self.lagging_reason,
            "history": [round(s, 4) for _, s in self.history],
        }


class HealthBook:
    """One ``Health`` per upstream name, created on first use."""

    def __init__(
        self,
        settings: HealthSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or HealthSettings()
        self._clock = clock
        self._records: dict[str, Health] = {}

    def get(self, name: str) -> Health:
        rec = self._records.get(name)
        if rec is None:
            rec = self._records[name] = Health(name, self.settings, self._clock)
        return rec

    def all(self) -> list[Health]:
        return list(self._records.values())
