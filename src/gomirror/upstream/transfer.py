"""upstream.transfer bounds how long and how slowly one upstream answer may arrive.

``read_timeout`` alone only bounds silence: a mirror that answers 200 and then
sends one byte per second never trips it. ``TransferLimits`` adds two bounds
per fetch, both reported by ``HttpUpstream`` as ``UpstreamTimeout`` (so the
health record parks the mirror like any other timeout):

- a minimum transfer rate: once ``rate_grace`` seconds of the body have
  passed, the bytes received in the last ``rate_grace`` seconds must average
  at least ``min_rate`` bytes per second (0 turns the check off);
- an overall deadline from the request to the last byte, redirects included:
  ``zip_deadline`` for zips, ``small_deadline`` for everything else (0 turns
  it off).

``RateGuard`` is the sliding-window rate check, fed the running byte count
after every chunk; its clock is injectable so tests control time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateGuard", "TransferLimits"]


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """How slowly (bytes/s) and how long (s) one upstream answer may take; 0 disables a bound."""

    min_rate: float = 10240.0
    rate_grace: float = 10.0
    small_deadline: float = 60.0
    zip_deadline: float = 1800.0

    def deadline(self, zip: bool) -> float | None:
        seconds = self.zip_deadline if zip else self.small_deadline
        return seconds if seconds > 0 else None

    def guard(self, clock: Callable[[], float] = time.monotonic) -> RateGuard | None:
        if self.min_rate <= 0 or self.rate_grace <= 0:
            return None
        return RateGuard(self.min_rate, self.rate_grace, clock)


class RateGuard:
    """Says when the average rate over the last ``window`` seconds fell below ``min_rate``."""

    __slots__ = ("_clock", "_min_rate", "_samples", "_start", "_window")

    def __init__(
        self, min_rate: float, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._min_rate = min_rate
        self._window = window
        self._clock = clock
        self._start = clock()
        # (time, bytes so far); the oldest sample is the newest one at least a window old.
        self._samples: deque[tuple[float, int]] = deque([(self._start, 0)])

    def too_slow(self, total: int) -> float | None:
        """Record that ``total`` bytes have arrived; the measured rate if it is too low, else None."""
        now = self._clock()
        samples = self._samples
        samples.append((now, total))
        horizon = now - self._window
        while len(samples) > 1 and samples[1][0] <= horizon:
            samples.popleft()
        if now - self._start < self._window:
            return None  # still in the grace period: connection set-up and TCP slow start
        t0, n0 = samples[0]
        rate = (total - n0) / max(now - t0, 1e-9)
        return rate if rate < self._min_rate else None
