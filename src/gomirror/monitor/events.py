"""monitor.events records security-relevant events: tampered or invalid upstream content.

Every event is logged as a warning, counted in metrics and written as a small
JSON document under ``_gomirror/events/`` in storage, so operators can audit
which mirror served what, even across restarts. Recording never raises: a
broken event sink must not turn a successful failover into an error.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass

from gomirror.errors import ChecksumMismatch, GomirrorError, StorageError
from gomirror.monitor.metrics import Metrics
from gomirror.storage.base import Storage

log = logging.getLogger(__name__)
EVENTS_PREFIX = "_gomirror/events/"


@dataclass(frozen=True, slots=True)
class Event:
    """One rejected upstream answer."""

    kind: str  # "checksum_mismatch" or "invalid_content"
    upstream: str
    module: str
    version: str
    file: str  # "zip", "mod", "info", "list", "latest"
    detail: str
    expected: str | None = None
    got: str | None = None
    time: float = 0.0


class EventRecorder:
    """Logs, counts and stores events (see the module docstring)."""

    def __init__(self, storage: Storage, metrics: Metrics) -> None:
        self._storage = storage
        self._metrics = metrics

    async def bad_content(
        self, upstream: str, module: str, version: str, file: str, err: GomirrorError
    ) -> Event:
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
                time.time(),
            )
        else:
            ev = Event(
                "invalid_content",
                upstream,
                module,
                version,
                file,
                str(err).split("\n")[0][:500],
                time=time.time(),
            )
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
        self._metrics.tamper_events.labels(upstream, ev.kind).inc()
        await self._store(ev)
        return ev

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        """A checksum-database route served content that failed authentication."""
        ev = Event("sumdb_route_rejected", route, db, "", what, detail[:500], time=time.time())
        self._metrics.tamper_events.labels(route, ev.kind).inc()
        await self._store(ev)

    async def _store(self, ev: Event) -> None:
        key = f"{EVENTS_PREFIX}{time.strftime('%Y-%m-%d', time.gmtime(ev.time))}/{int(ev.time * 1000)}-{uuid.uuid4().hex[:8]}.json"
        try:
            await self._storage.put_bytes(key, json.dumps(asdict(ev), sort_keys=True).encode())
        except StorageError:
            log.exception("event not stored", extra={"key": key})

    async def recent(self, limit: int = 100) -> list[Event]:
        keys = [k async for k in self._storage.keys(EVENTS_PREFIX)]
        out: list[Event] = []
        for key in sorted(keys)[-limit:]:
            data = await self._storage.get(key)
            if data:
                out.append(Event(**json.loads(data)))
        return out
