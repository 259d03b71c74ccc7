"""monitor.events records security-relevant events: tampered or invalid upstream content, and operator actions.

Every event is logged as a warning, counted in metrics and written as a small
JSON document under ``_gomirror/events/`` in storage, so operators can audit
which mirror served what, even across restarts. Recording never raises: a
broken event sink must not turn a successful failover into an error.

Repeats are coalesced: an event with the same kind, upstream, module, version
and file as one recorded less than ``window`` seconds before is not a new
document but raises that document's ``count`` (and its ``last`` time), and is
not logged again, so a mirror serving one broken file to thousands of
requests costs one event and one log line per window. The metric still
counts every occurrence. The memory of open events is bounded.

:meth:`EventRecorder.audit` records what an operator did to the cache
(``cache purge --force``, the admin purge endpoint, ``cache gc``, ``cache
import``): the same document format, with ``upstream`` naming who did it,
logged at warning, never coalesced (each action is its own document) and not
counted as tampering.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

from gomirror.errors import ChecksumMismatch, GomirrorError, StorageError
from gomirror.monitor.metrics import Metrics
from gomirror.storage.base import Storage

log = logging.getLogger(__name__)
EVENTS_PREFIX = "_gomirror/events/"
FINDINGS_PREFIX = EVENTS_PREFIX + "findings/"
COALESCE_WINDOW = 60.0
MAX_OPEN = 1024  # distinct events remembered for coalescing

Identity = tuple[str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Event:
    """One rejected upstream answer (``count`` times between ``time`` and ``last``), or one audit."""

    kind: str  # "checksum_mismatch", "invalid_content", "sumdb_route_rejected", or an audit kind
    upstream: str  # for an audit: who acted ("gomirror cache purge", "admin endpoint"...)
    module: str
    version: str
    file: str  # "zip", "mod", "info", "list", "latest"
    detail: str
    expected: str | None = None
    got: str | None = None
    time: float = 0.0
    count: int = 1
    last: float = 0.0

    @property
    def identity(self) -> Identity:
        return (self.kind, self.upstream, self.module, self.version, self.file)


_FIELDS = frozenset(f.name for f in fields(Event))


@dataclass(slots=True)
class _Open:
    event: Event
    key: str


class EventRecorder:
    """Logs, counts, coalesces and stores events (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        metrics: Metrics,
        *,
        window: float = COALESCE_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._metrics = metrics
        self._window = window
        self._clock = clock
        self._open: OrderedDict[Identity, _Open] = OrderedDict()
        self._store_failed_at: float | None = None

    async def bad_content(
        self, upstream: str, module: str, version: str, file: str, err: GomirrorError
    ) -> Event:
        now = self._clock()
        if isinstance(err, ChecksumMismatch):
            ev = Event(
                "checksum_mismatch",
                upstream,
                module,
                version,
                file,
                str(err).split("\n")[0],
                err.expected,
                err.got,
                now,
                last=now,
            )
        else:
            ev = Event(
                "invalid_content",
                upstream,
                module,
                version,
                file,
                str(err).split("\n")[0][:500],
                time=now,
                last=now,
            )
        self._metrics.tamper_events.labels(upstream, ev.kind).inc()
        stored, fresh = self._coalesce(ev)
        if fresh:
            log.warning(
                "upstream content rejected",
                extra={
                    "event": ev.kind,
                    "upstream": upstream,
                    "mod": module,  # "module" is a reserved LogRecord attribute: it would raise
                    "version": version,
                    "file": file,
                    "detail": ev.detail,
                },
            )
        await self._store(stored)
        return stored.event

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        """A checksum-database route served content that failed authentication."""
        now = self._clock()
        ev = Event("sumdb_route_rejected", route, db, "", what, detail[:500], time=now, last=now)
        self._metrics.tamper_events.labels(route, ev.kind).inc()
        stored, _ = self._coalesce(ev)
        await self._store(stored)

    async def audit(
        self,
        kind: str,
        who: str,
        *,
        module: str = "",
        version: str = "",
        file: str = "",
        detail: str = "",
    ) -> Event:
        """Record one operator action (see the module docstring); never raises."""
        now = self._clock()
        ev = Event(kind, who, module, version, file, detail[:500], time=now, last=now)
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        key = f"{EVENTS_PREFIX}{day}/{int(now * 1000)}-{uuid.uuid4().hex[:8]}.json"
        log.warning(
            "cache changed by operator",
            extra={"event": kind, "by": who, "mod": module, "version": version, "file": file},
        )
        await self._store(_Open(ev, key))
        return ev

    def _coalesce(self, ev: Event) -> tuple[_Open, bool]:
        """The open event ev adds to (and whether it is a new one)."""
        ident = ev.identity
        entry = self._open.get(ident)
        if entry is not None and ev.time - entry.event.time < self._window:
            entry.event = replace(entry.event, count=entry.event.count + 1, last=ev.time)
            self._open.move_to_end(ident)
            return entry, False
        day = time.strftime("%Y-%m-%d", time.gmtime(ev.time))
        key = f"{EVENTS_PREFIX}{day}/{int(ev.time * 1000)}-{uuid.uuid4().hex[:8]}.json"
        entry = _Open(ev, key)
        self._open[ident] = entry
        self._open.move_to_end(ident)
        while len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)
        return entry, True

    async def _store(self, entry: _Open) -> None:
        try:
            data = json.dumps(asdict(entry.event), sort_keys=True).encode()
            await self._storage.put_bytes(entry.key, data)
        except StorageError as e:
            # A full disk fails every write: say so once per window, not once per event.
            now = self._clock()
            if self._store_failed_at is None or now - self._store_failed_at >= self._window:
                self._store_failed_at = now
                log.warning("event not stored", extra={"key": entry.key, "reason": str(e)[:200]})

    async def recent(self, limit: int = 100) -> list[Event]:
        keys = [
            k
            async for k in self._storage.keys(EVENTS_PREFIX)
            if not k.startswith(FINDINGS_PREFIX)  # the monitor's findings have their own store
        ]
        out: list[Event] = []
        for key in sorted(keys)[-limit:]:
            data = await self._storage.get(key)
            if data:
                raw = json.loads(data)
                # Documents written by older versions lack count/last; unknown keys are ignored.
                ev = Event(**{k: v for k, v in raw.items() if k in _FIELDS})
                out.append(ev if ev.last else replace(ev, last=ev.time))
        return out
