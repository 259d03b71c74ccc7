"""monitor.cachefull reports a full cache: a counter, and one log line per window, not per request.

``CacheFullReporter(registry)`` registers ``gomirror_cache_full_total``
(writes refused because the cache had no space left, by operation) on the
given Prometheus registry. ``report(key, err)`` counts one refused write and
logs a ``warning`` "cache full" naming the key and the reason, at most once
per ``window`` seconds; the next line says how many were suppressed. The
service calls it and goes on answering (uncached when it can). ``/readyz``
says "cache full" on its own (``monitor.readiness``), and both recover by
themselves when space returns: nothing here latches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from gomirror.errors import StorageFull

log = logging.getLogger(__name__)

LOG_WINDOW = 60.0


class CacheFullReporter:
    """Counts refused writes and logs them, rate-limited (see the module docstring)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        window: float = LOG_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = Counter(
            "gomirror_cache_full",
            "Writes to the cache refused for lack of space, by operation (zip, file).",
            ["op"],
            registry=registry,
        )
        self._window = window
        self._clock = clock
        self._logged_at: float | None = None
        self._suppressed = 0

    def report(self, key: str, err: StorageFull) -> None:
        """One write of ``key`` was refused for lack of space."""
        self._counter.labels("zip" if key.endswith(".zip") else "file").inc()
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._window:
            self._suppressed += 1
            return
        self._logged_at = now
        suppressed, self._suppressed = self._suppressed, 0
        log.warning(
            "cache full",
            extra={
                "key": key,
                "reason": str(err).split("\n", 1)[0][:200],
                "suppressed": suppressed,
            },
        )
