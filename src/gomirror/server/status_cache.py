"""server.status_cache makes the status page and its JSON at most once per ``ttl`` seconds.

Building a snapshot reads the audit events from storage and parses the
metrics, and rendering it is a few thousand lines of escaping: 15-22 ms per
``/`` request, so a flood of ``/`` requests could keep a core busy.
``CachedStatus(source, ttl)`` wraps any snapshot source and keeps the last
snapshot, and each rendering of it (``page()``: the HTML, ``json()``: the
JSON text), for ``ttl`` seconds (default ``STATUS_TTL``, 1 s: the page's own
script refreshes every 10 s, so nobody sees the difference). Concurrent
requests when the copy is stale share one build (single-flight), and an
error in a build is not cached. Time is an injectable monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from gomirror.coordination.singleflight import SingleFlight
from gomirror.server.status_page import StatusSnapshot, dumps, render_status_page

STATUS_TTL = 1.0


class SnapshotSource(Protocol):
    async def snapshot(self) -> StatusSnapshot: ...


class CachedStatus:
    """A snapshot source whose snapshot and renderings are reused for ``ttl`` seconds."""

    def __init__(
        self,
        source: SnapshotSource,
        ttl: float = STATUS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._clock = clock
        self._flight = SingleFlight()
        self._made_at = float("-inf")
        self._snapshot: StatusSnapshot | None = None
        self._page: str | None = None
        self._json: str | None = None

    async def snapshot(self) -> StatusSnapshot:
        """The current snapshot: the cached one while it is younger than ``ttl``."""
        if self._snapshot is not None and self._clock() - self._made_at < self._ttl:
            return self._snapshot
        return await self._flight.do("snapshot", self._refresh)

    async def _refresh(self) -> StatusSnapshot:
        snap = await self._source.snapshot()
        self._snapshot, self._page, self._json = snap, None, None
        self._made_at = self._clock()
        return snap

    async def page(self) -> str:
        """The status page's HTML for the current snapshot (rendered once per snapshot)."""
        snap = await self.snapshot()
        if self._page is None or snap is not self._snapshot:
            text = render_status_page(snap)
            if snap is self._snapshot:
                self._page = text
            return text
        return self._page

    async def json(self) -> str:
        """The status JSON text for the current snapshot (serialised once per snapshot)."""
        snap = await self.snapshot()
        if self._json is None or snap is not self._snapshot:
            text = dumps(snap)
            if snap is self._snapshot:
                self._json = text
            return text
        return self._json
