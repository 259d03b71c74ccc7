"""coordination.sharedhealth lets instances agree which mirror is down, through ``SharedState``.

Publish: ``SharedHealth.attach(record)`` sets the record's ``on_change``
hook; when this instance's record goes down (a timeout, a long
``Retry-After``, failures in a row) or comes back up, one small JSON value
``health:<name>`` = ``{"down", "until", "reason", "by", "at"}`` is written in
the background, with a TTL of the remaining down time (a few minutes for
"up"). Writing never blocks or fails a request.

Read on decision: ``HealthSyncedUpstream`` wraps the top of the upstream
tree and calls ``refresh()`` before each request, so the chain's policy
decides with what the other instances saw. ``refresh`` reads every attached
record at most once per ``refresh_every`` seconds (concurrent callers share
one read), and applies a value written by *another* instance and newer than
the last one seen for that mirror: down for the time it has left, or up again
(``Health.adopt``, which does not call the hook, so nothing echoes back).

Fail-soft: the state is a hint (``SharedState``'s contract). Redis being
unreachable makes ``RedisState`` answer from its in-memory fallback; any
other failure to read or write is logged at debug level and ignored, so each
instance then simply keeps its own view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gomirror.coordination.base import SharedState

if TYPE_CHECKING:
    from gomirror.upstream.base import Fetched, FirstByte, Upstream

log = logging.getLogger(__name__)

KEY_PREFIX = "health:"
UP_TTL = 300.0  # how long an "up again" note is kept for instances that adopted the outage
MIN_TTL = 0.05


class Record(Protocol):
    """What this module needs of an ``upstream.health.Health``."""

    name: str
    on_change: Callable[[Any, bool, float, str], None] | None

    @property
    def down(self) -> bool: ...

    def adopt(self, down: bool, seconds: float = 0.0, reason: str = "") -> None: ...


class SharedHealth:
    """Publishes and reads mirror down/up verdicts (see the module docstring)."""

    def __init__(
        self,
        state: SharedState,
        instance: str,
        *,
        refresh_every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self.instance = instance
        self._refresh_every = refresh_every
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._seen: dict[str, float] = {}  # mirror -> "at" of the newest value applied or written
        self._refreshed = -math.inf
        self._refreshing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.adopted = 0  # verdicts taken from other instances, for tests and metrics

    def attach(self, record: Record) -> None:
        self._records[record.name] = record
        record.on_change = self._changed

    # --- publish ------------------------------------------------------------

    def _changed(self, record: Any, down: bool, seconds: float, reason: str) -> None:
        now = time.time()
        self._seen[record.name] = now
        value = {
            "down": down,
            "until": now + seconds if down else now,
            "reason": reason[:300],
            "by": self.instance,
            "at": now,
        }
        ttl = max(MIN_TTL, seconds) if down else UP_TTL
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous test): nothing to publish to
        task = loop.create_task(self._write(record.name, value, ttl), name="health-publish")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, name: str, value: dict[str, Any], ttl: float) -> None:
        try:
            await self._state.set(KEY_PREFIX + name, json.dumps(value).encode(), ttl)
        except Exception as e:  # a hint lost: each instance keeps its own view
            log.debug("health publish failed", extra={"upstream": name, "error": repr(e)[:200]})

    async def flush(self) -> None:
        """Wait for the writes started so far (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- read -------------------------------------------------------------

    async def refresh(self) -> None:
        """Apply other instances' verdicts; at most one read per ``refresh_every``."""
        if self._clock() - self._refreshed < self._refresh_every:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshed = self._clock()
            self._refreshing = asyncio.get_running_loop().create_task(
                self._read_all(), name="health-refresh"
            )
        await asyncio.shield(self._refreshing)

    async def _read_all(self) -> None:
        for name, record in list(self._records.items()):
            try:
                raw = await self._state.get(KEY_PREFIX + name)
                if raw is not None:
                    self._apply(record, json.loads(raw))
            except Exception as e:
                log.debug("health read failed", extra={"upstream": name, "error": repr(e)[:200]})

    def _apply(self, record: Record, value: dict[str, Any]) -> None:
        at = float(value["at"])
        if value.get("by") == self.instance or at <= self._seen.get(record.name, -math.inf):
            return
        self._seen[record.name] = at
        if value["down"]:
            left = float(value["until"]) - time.time()
            if left <= 0 or record.down:
                return
            record.adopt(True, left, f"{value.get('reason', '')} (seen by {value.get('by', '?')})")
        elif record.down:
            record.adopt(False)
        else:
            return
        self.adopted += 1
        log.info(
            "mirror health taken from another instance",
            extra={"upstream": record.name, "down": bool(value["down"]), "by": value.get("by")},
        )

    async def close(self) -> None:
        for task in [self._refreshing, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


class HealthSyncedUpstream:
    """An Upstream that refreshes shared mirror health before each request it passes on."""

    def __init__(self, inner: Upstream, shared: SharedHealth) -> None:
        self.inner = inner
        self.shared = shared

    @property
    def name(self) -> str:
        return self.inner.name

    async def list(self, module: str) -> Fetched:
        await self.shared.refresh()
        return await self.inner.list(module)

    async def info(self, module: str, query: str) -> Fetched:
        await self.shared.refresh()
        return await self.inner.info(module, query)

    async def latest(self, module: str) -> Fetched:
        await self.shared.refresh()
        return await self.inner.latest(module)

    async def mod(self, module: str, version: str) -> Fetched:
        await self.shared.refresh()
        return await self.inner.mod(module, version)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        await self.shared.refresh()
        return await self.inner.zip(module, version, dst, first_byte)

    async def close(self) -> None:
        await self.inner.close()
