"""server.status builds the status page's snapshot from the running parts.

``StatusBuilder.snapshot()`` reads, without doing any network I/O: every
mirror's ``Health`` record (state, p50/p90, success ratio, history), the
consistency monitor's view (which mirror has which latest version of each
watched module, and its findings) when a monitor runs, the stored audit
events, the cache counters from the metrics, and the checksum database's
verified tree size. Mirror names are shown without userinfo.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from gomirror import __version__
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.server.status_page import (
    CacheStats,
    EventRow,
    MirrorStatus,
    StatusSnapshot,
    SumdbStatus,
    WatchedModule,
)
from gomirror.upstream.goproxy import redact_url
from gomirror.upstream.health import HealthBook

SEVERITY = {
    "checksum_mismatch": "critical",
    "sumdb_route_rejected": "critical",
    "tamper": "critical",
    "invalid_content": "warning",
}


class MonitorView(Protocol):
    """What the consistency monitor shows on the page."""

    def watched(self) -> Sequence[WatchedModule]: ...

    async def recent_findings(self, limit: int) -> Sequence[EventRow]: ...


def clean(text: str) -> str:
    """Text that any encoder accepts: mirror-served bytes may carry lone surrogates."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class StatusBuilder:
    """Makes ``StatusSnapshot``s (see the module docstring)."""

    def __init__(
        self,
        *,
        health: HealthBook,
        mirrors: Sequence[str],
        metrics: Metrics,
        events: EventRecorder,
        policy: str,
        sumdb: Callable[[], Sequence[SumdbStatus]] | None = None,
        monitor: MonitorView | None = None,
        metrics_text: Callable[[], Awaitable[bytes]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics_text = metrics_text
        self._health = health
        self._mirrors = list(mirrors)
        self._metrics = metrics
        self._events = events
        self._policy = policy
        self._sumdb = sumdb
        self._monitor = monitor
        self._clock = clock
        self.started_at = clock()

    async def snapshot(self) -> StatusSnapshot:
        now = self._clock()
        events: list[EventRow] = [
            EventRow(
                time=e.time,
                kind=e.kind,
                severity=SEVERITY.get(e.kind, "warning"),
                mirror=redact_url(e.upstream),
                module=clean(e.module),
                version=clean(e.version),
                text=clean(e.detail),
            )
            for e in reversed(await self._events.recent(50))
        ]
        modules: Sequence[WatchedModule] = ()
        if self._monitor is not None:
            modules = self._monitor.watched()
            events = [*await self._monitor.recent_findings(50), *events]
            events.sort(key=lambda e: e.time, reverse=True)
        return StatusSnapshot(
            version=__version__,
            started_at=self.started_at,
            generated_at=now,
            policy=self._policy,
            mirrors=tuple(self._mirror(name) for name in self._mirrors),
            modules=tuple(modules),
            events=tuple(events[:50]),
            cache=await self._cache(),
            sumdbs=tuple(self._sumdb()) if self._sumdb is not None else (),
        )

    def _mirror(self, name: str) -> MirrorStatus:
        snap = self._health.get(name).snapshot()

        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 1)

        note = snap["untrusted_reason"] or snap["down_reason"] or snap["lagging_reason"]
        return MirrorStatus(
            name=redact_url(name),
            url=redact_url(name),
            state=str(snap["state"]),
            p50_ms=ms(snap["p50"]),
            p90_ms=ms(snap["p90"]),
            success_ratio=snap["success_ratio"],
            requests=int(snap["requests"]),
            consecutive_failures=int(snap["consecutive_failures"]),
            last_error=clean(redact_url(str(snap["last_error"]))),
            last_error_at=snap["last_error_at"],
            history_ms=tuple(ms(v) for v in snap["history"]),
            note=str(note),
        )

    async def _cache(self) -> CacheStats:
        """Cache counters, summed over every worker when ``metrics_text`` aggregates them."""
        if self._metrics_text is not None:
            text = (await self._metrics_text()).decode()
            samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
        else:
            samples = [
                s
                for c in (self._metrics.cache, self._metrics.bytes_served)
                for fam in c.collect()
                for s in fam.samples
            ]
        hits = misses = served = 0
        for sample in samples:
            if sample.name == "gomirror_cache_total":
                if sample.labels.get("result") == "hit":
                    hits += int(sample.value)
                elif sample.labels.get("result") == "miss":
                    misses += int(sample.value)
            elif sample.name == "gomirror_bytes_served_total":
                served += int(sample.value)
        return CacheStats(hits=hits, misses=misses, bytes_served=served)


class MonitorSource(Protocol):
    def snapshot(self, findings: int = 50) -> Any: ...


class MonitorAdapter:
    """Presents the consistency monitor's snapshot as the status page's rows."""

    def __init__(self, monitor: MonitorSource) -> None:
        self._monitor = monitor

    def watched(self) -> Sequence[WatchedModule]:
        return [
            WatchedModule(
                path=m.path,
                newest=m.newest,
                latest={redact_url(k): v for k, v in m.latest.items()},
                checked_at=m.checked_at,
            )
            for m in self._monitor.snapshot(0).modules
        ]

    async def recent_findings(self, limit: int) -> Sequence[EventRow]:
        return [
            EventRow(
                time=f.first_seen,
                kind=f.type,
                severity=f.severity,
                mirror=redact_url(f.mirror),
                module=clean(f.module),
                version=clean(f.version),
                text=clean(redact_url(f.detail)),
                last_seen=f.last_seen,
                resolved_at=f.resolved_at,
            )
            for f in self._monitor.snapshot(limit).findings
        ]
