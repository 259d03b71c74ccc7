"""monitor.readiness answers ``/readyz``: can this process serve modules right now?

Ready means both: the cache is writable (a small probe file is written and
removed, at most every ``interval`` seconds; a full disk says "cache full"),
and at least one route to modules works (a mirror that is not ``down``, or
``direct``). With shared object storage (``storage = "s3"``) the bucket must
answer too: one cheap request (a ``HEAD`` of the bucket) with a timeout of
``storage_timeout`` seconds, at most every ``interval`` seconds; an
unreachable bucket makes the instance not ready. Redis being unreachable
only adds a "degraded" line: serving goes on with local coordination.
``/healthz`` stays a pure liveness check; a load balancer should route on
``/readyz``. The disk probe runs in a worker thread so a slow disk never
stalls the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gomirror.errors import StorageError, StorageFull
from gomirror.upstream.health import HealthBook


class Writable(Protocol):
    def check_writable(self) -> None: ...


@runtime_checkable
class Reachable(Protocol):
    async def check(self) -> None:
        """Raise StorageError unless the store answers."""
        ...


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
        remote: Reachable | None = None,
        storage_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._degraded = degraded
        self._remote = remote
        self._remote_timeout = storage_timeout
        self._remote_ok = True
        self._remote_line = ""
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
            if self._remote is not None:
                self._remote_ok, self._remote_line = await self._reach(self._remote)
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
        if self._remote is not None:
            lines.append(self._remote_line)
        if self._degraded is not None and self._degraded():
            # Still ready: serving goes on with local coordination, only less shared.
            lines.append("coordination: degraded: redis unreachable, coordinating locally")
        ready = self._storage_ok and routes_ok and self._remote_ok
        return ReadyState(ready, tuple(lines), self._full)

    async def _reach(self, remote: Reachable) -> tuple[bool, str]:
        try:
            await asyncio.wait_for(remote.check(), self._remote_timeout)
        except TimeoutError:
            return False, f"storage: unreachable: no answer within {self._remote_timeout:g} s"
        except StorageError as e:
            return False, f"storage: unreachable: {str(e).splitlines()[0][:200]}"
        return True, "storage: reachable"
