"""monitor.observed adds observability by wrapping: an observed upstream, storage and verifier.

``ObservedUpstream(inner, health, metrics, events)`` times every call of one
mirror and records its outcome in three places: the mirror's ``Health``
record (latency, time to first byte, success, down/untrusted), the Prometheus
metrics, and, for content that failed a check, the audit events. Failures
that are the mirror's are logged at ``warning`` with the upstream and the
reason; a checksum-database failure is not held against the mirror.
``ObservedStorage`` counts and times storage operations by kind and result;
``ObservedVerifier`` counts verifications by result. None of them changes
what the wrapped part returns or raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    Gone,
    InvalidContent,
    NotFound,
    RateLimited,
    StorageError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    VerificationError,
)
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.storage.base import ObjectInfo, Storage
from gomirror.upstream.base import Fetched, FirstByte, Upstream
from gomirror.upstream.health import Health, OpKind
from gomirror.upstream.verified import Kind, Verdict, Verifier

log = logging.getLogger(__name__)
T = TypeVar("T")


def outcome_of(err: BaseException | None) -> str:
    """A short, bounded label for metrics."""
    if err is None:
        return "ok"
    if isinstance(err, Gone):
        return "gone"
    if isinstance(err, NotFound):
        return "not_found"
    if isinstance(err, ChecksumMismatch):
        return "checksum_mismatch"
    if isinstance(err, InvalidContent):
        return "invalid_content"
    if isinstance(err, VerificationError):
        return "verification_error"
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, UpstreamUnavailable):
        return "unavailable"
    if isinstance(err, asyncio.CancelledError):
        return "cancelled"
    if isinstance(err, StorageError):
        return "storage_error"
    return "error"


class ObservedUpstream:
    """Records health, metrics and events for one upstream (see the module docstring)."""

    def __init__(
        self, inner: Upstream, health: Health, metrics: Metrics, events: EventRecorder
    ) -> None:
        self.inner = inner
        self.health = health
        self._metrics = metrics
        self._events = events

    @property
    def name(self) -> str:
        return self.inner.name

    async def list(self, module: str) -> Fetched:
        return await self._observe("list", "small", module, "", lambda _fb: self.inner.list(module))

    async def info(self, module: str, query: str) -> Fetched:
        return await self._observe(
            "info", "small", module, query, lambda _fb: self.inner.info(module, query)
        )

    async def latest(self, module: str) -> Fetched:
        return await self._observe(
            "latest", "small", module, "", lambda _fb: self.inner.latest(module)
        )

    async def mod(self, module: str, version: str) -> Fetched:
        return await self._observe(
            "mod", "small", module, version, lambda _fb: self.inner.mod(module, version)
        )

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        def call(fb: FirstByte) -> Awaitable[Fetched]:
            def both() -> None:
                fb()
                if first_byte is not None:
                    first_byte()

            return self.inner.zip(module, version, dst, both)

        return await self._observe("zip", "zip", module, version, call)

    async def close(self) -> None:
        await self.inner.close()

    async def _observe(
        self,
        op: str,
        kind: OpKind,
        module: str,
        version: str,
        call: Callable[[FirstByte], Awaitable[Fetched]],
    ) -> Fetched:
        started = time.monotonic()
        ttfb: list[float] = []

        def first_byte() -> None:
            if not ttfb:
                ttfb.append(time.monotonic() - started)

        outcome = "ok"
        try:
            fetched = await call(first_byte)
        except asyncio.CancelledError:
            outcome = "cancelled"
            self.health.record_unfinished(kind, time.monotonic() - started, bool(ttfb))
            raise
        except GomirrorError as e:
            outcome = outcome_of(e)
            await self._failed(op, kind, module, version, e, time.monotonic() - started)
            raise
        except Exception as e:
            outcome = outcome_of(e)
            raise
        finally:
            seconds = time.monotonic() - started
            self._metrics.observe_upstream(self.name, op, outcome, seconds)
            if ttfb:
                self._metrics.upstream_ttfb.labels(self.name, kind).observe(ttfb[0])
        took = fetched.elapsed if fetched.elapsed is not None else time.monotonic() - started
        self.health.record_success(kind, took, ttfb[0] if ttfb else None)
        return fetched

    async def _failed(
        self, op: str, kind: OpKind, module: str, version: str, err: GomirrorError, seconds: float
    ) -> None:
        reason = str(err).split("\n", 1)[0]
        if isinstance(err, NotFound):
            self.health.record_answer(kind, seconds)
            return
        if isinstance(err, ChecksumMismatch):
            self.health.mark_untrusted(reason)
            await self._events.bad_content(self.name, module, version, op, err)
            return
        if isinstance(err, VerificationError):
            return  # the checksum database failed, not this mirror
        if isinstance(err, InvalidContent):
            self.health.record_failure(reason)
            await self._events.bad_content(self.name, module, version, op, err)
            return
        if isinstance(err, UpstreamError):
            self.health.record_failure(
                reason,
                timeout=isinstance(err, UpstreamTimeout),
                retry_after=err.retry_after if isinstance(err, RateLimited) else None,
            )
            log.warning(
                "upstream request failed",
                extra={
                    "upstream": self.name,
                    "op": op,
                    "mod": module,
                    "version": version,
                    "reason": reason[:200],
                },
            )


class ObservedStorage:
    """Counts and times the operations of a Storage (see the module docstring)."""

    def __init__(self, inner: Storage, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    async def _timed(self, op: str, aw: Awaitable[T]) -> T:
        started = time.monotonic()
        result = "ok"
        try:
            return await aw
        except StorageError:
            result = "error"
            raise
        finally:
            self._metrics.storage_ops.labels(op, result).inc()
            self._metrics.storage_seconds.labels(op).observe(time.monotonic() - started)

    async def get(self, key: str) -> bytes | None:
        return await self._timed("get", self.inner.get(key))

    async def stat(self, key: str) -> ObjectInfo | None:
        return await self._timed("stat", self.inner.stat(key))

    async def put_bytes(self, key: str, data: bytes) -> None:
        await self._timed("put", self.inner.put_bytes(key, data))

    async def put_file(self, key: str, src: Path) -> None:
        await self._timed("put", self.inner.put_file(key, src))

    async def delete(self, key: str) -> None:
        await self._timed("delete", self.inner.delete(key))

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        return self.inner.keys(prefix)

    async def local_path(self, key: str) -> Path | None:
        return await self.inner.local_path(key)

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        return await self.inner.stream(key)

    async def presign(self, key: str, expires: float) -> str | None:
        return await self.inner.presign(key, expires)

    async def close(self) -> None:
        await self.inner.close()


class ObservedVerifier:
    """Counts checksum-database verifications by result."""

    def __init__(self, inner: Verifier, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self.last_verified_at: float | None = None  # wall-clock times, for the status page
        self.last_error_at: float | None = None
        self.last_error = ""

    async def prefetch(self, module: str, version: str) -> None:
        await self.inner.prefetch(module, version)

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict:
        try:
            verdict = await self.inner.check(module, version, kind, h1)
        except (VerificationError, NotFound, UpstreamError) as e:
            self._metrics.verifications.labels("failed").inc()
            if not isinstance(e, ChecksumMismatch):
                self.last_error_at, self.last_error = time.time(), str(e).split("\n")[0][:300]
            raise
        self._metrics.verifications.labels("verified" if verdict.verified else "skipped").inc()
        if verdict.verified:
            self.last_verified_at = time.time()
        return verdict
