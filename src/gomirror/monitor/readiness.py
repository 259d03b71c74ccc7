"""monitor.readiness answers ``/readyz``: can this process serve modules right now?

Ready means both: the cache is writable (a small probe file is written and
removed, at most every ``interval`` seconds; a full disk says "cache full"),
and at least one route to modules works (a mirror that is not ``down``, or
``direct``). ``/healthz`` stays a pure liveness check; a load balancer should
route on ``/readyz``. The probe runs in a worker thread so a slow disk never
stalls the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gomirror.errors import StorageError, StorageFull
from gomirror.upstream.health import HealthBook


class Writable(Protocol):
    def check_writable(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReadyState:
    """The verdict and one line per check, for the response body."""

    ready: bool
    lines: tuple[str, ...]
    cache_full: bool = False


class Readiness:
    """Computes ``ReadyState`` (see the module docstring)."""

    def __init__(
        self,
        cache: Writable,
        health: HealthBook,
        mirrors: Sequence[str],
        *,
        has_direct: bool,
        interval: float = 5.0,
        degraded: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._degraded = degraded
        self._cache = cache
        self._health = health
        self._mirrors = list(mirrors)
        self._direct = has_direct
        self._interval = interval
        self._clock = clock
        self._checked_at: float | None = None
        self._storage_line = ""
        self._storage_ok = False
        self._full = False

    async def check(self) -> ReadyState:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._interval:
            self._checked_at = now
            try:
                await asyncio.to_thread(self._cache.check_writable)
                self._storage_ok, self._full, self._storage_line = True, False, "cache: writable"
            except StorageFull as e:
                self._storage_ok, self._full = False, True
                self._storage_line = f"cache: full: {e}"
            except StorageError as e:
                self._storage_ok, self._full = False, False
                self._storage_line = f"cache: not writable: {e}"
        up = [m for m in self._mirrors if not self._health.get(m).down]
        if self._direct:
            routes_ok, route_line = True, "upstream: direct available"
        elif up:
            routes_ok, route_line = True, f"upstream: {len(up)} of {len(self._mirrors)} mirrors up"
        elif self._mirrors:
            routes_ok, route_line = False, "upstream: every mirror is down"
        else:
            routes_ok, route_line = False, "upstream: none configured (off)"
        lines = [self._storage_line, route_line]
        if self._degraded is not None and self._degraded():
            # Still ready: serving goes on with local coordination, only less shared.
            lines.append("coordination: degraded: redis unreachable, coordinating locally")
        return ReadyState(self._storage_ok and routes_ok, tuple(lines), self._full)
