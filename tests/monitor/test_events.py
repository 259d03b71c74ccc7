"""Tests for monitor.events: events are logged, counted and stored once per window, with a count.

Storage is a real ``DiskStorage`` under ``tmp_path`` (or a wrapper that fails
every write, playing a full disk); the recorder's clock is a test-controlled
value, so windows pass without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gomirror.errors import ChecksumMismatch, InvalidContent, StorageFull
from gomirror.monitor.events import EVENTS_PREFIX, MAX_OPEN, EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.storage.disk import DiskStorage

UP = "http://mirror.test"
M, V = "example.com/ev/mod", "v1.0.0"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class FullDisk(DiskStorage):
    async def put_bytes(self, key: str, data: bytes) -> None:
        raise StorageFull(f"cache full (no space left) while writing {key}")


def with_recorder(
    tmp_path: Path,
    body: Callable[[EventRecorder, DiskStorage, Metrics, Clock], Awaitable[None]],
    storage_cls: type[DiskStorage] = DiskStorage,
) -> None:
    async def main() -> None:
        storage = storage_cls(tmp_path / "store", fsync=False)
        metrics = Metrics()
        clock = Clock()
        try:
            await body(
                EventRecorder(storage, metrics, window=60, clock=clock), storage, metrics, clock
            )
        finally:
            await storage.close()

    run(main())


async def stored(storage: DiskStorage) -> list[dict[str, Any]]:
    out = []
    async for key in storage.keys(EVENTS_PREFIX):
        data = await storage.get(key)
        assert data is not None
        out.append(json.loads(data))
    return out


def tamper_count(metrics: Metrics, kind: str) -> float:
    v = metrics.registry.get_sample_value(
        "gomirror_tamper_events_total", {"upstream": UP, "kind": kind}
    )
    return v or 0.0


def test_repeats_within_the_window_are_one_event_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(
        rec: EventRecorder, storage: DiskStorage, metrics: Metrics, clock: Clock
    ) -> None:
        err = InvalidContent("invalid .info JSON: nested too deeply")
        with caplog.at_level(logging.WARNING, logger="gomirror.monitor.events"):
            for _ in range(3000):
                await rec.bad_content(UP, M, V, "info", err)
                clock.now += 0.01
        docs = await stored(storage)
        assert len(docs) == 1
        assert docs[0]["count"] == 3000
        assert docs[0]["last"] == pytest.approx(docs[0]["time"] + 29.99)
        assert tamper_count(metrics, "invalid_content") == 3000
        lines = [r for r in caplog.records if r.getMessage() == "upstream content rejected"]
        assert len(lines) == 1
        events = await rec.recent()
        assert [(e.kind, e.count) for e in events] == [("invalid_content", 3000)]

    with_recorder(tmp_path, body)


def test_a_new_window_starts_a_new_event_and_logs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(
        rec: EventRecorder, storage: DiskStorage, metrics: Metrics, clock: Clock
    ) -> None:
        err = InvalidContent("bad")
        with caplog.at_level(logging.WARNING, logger="gomirror.monitor.events"):
            await rec.bad_content(UP, M, V, "info", err)
            clock.now += 59
            await rec.bad_content(UP, M, V, "info", err)
            clock.now += 2  # 61 s after the first: a new window
            await rec.bad_content(UP, M, V, "info", err)
        docs = sorted(await stored(storage), key=lambda d: d["time"])
        assert [d["count"] for d in docs] == [2, 1]
        lines = [r for r in caplog.records if r.getMessage() == "upstream content rejected"]
        assert len(lines) == 2

    with_recorder(tmp_path, body)


def test_different_files_mirrors_or_kinds_are_different_events(tmp_path: Path) -> None:
    async def body(
        rec: EventRecorder, storage: DiskStorage, metrics: Metrics, clock: Clock
    ) -> None:
        bad = InvalidContent("bad")
        await rec.bad_content(UP, M, V, "info", bad)
        await rec.bad_content(UP, M, V, "mod", bad)
        await rec.bad_content(UP, M, "v1.0.1", "info", bad)
        await rec.bad_content("http://other.test", M, V, "info", bad)
        await rec.bad_content(UP, M, V, "info", ChecksumMismatch(M, V, "zip", "h1:a=", "h1:b="))
        await rec.route_rejected("sum.golang.org", UP, "tile/8/0/000", "bad hash")
        await rec.route_rejected("sum.golang.org", UP, "tile/8/0/000", "bad hash")
        docs = await stored(storage)
        assert len(docs) == 6
        assert sorted(d["count"] for d in docs) == [1, 1, 1, 1, 1, 2]

    with_recorder(tmp_path, body)


def test_open_events_are_bounded(tmp_path: Path) -> None:
    async def body(
        rec: EventRecorder, storage: DiskStorage, metrics: Metrics, clock: Clock
    ) -> None:
        bad = InvalidContent("bad")
        for i in range(MAX_OPEN + 10):
            await rec.bad_content(UP, M, f"v1.0.{i}", "info", bad)
        assert len(rec._open) == MAX_OPEN
        await rec.bad_content(UP, M, "v1.0.0", "info", bad)  # forgotten: a new document
        assert len(await stored(storage)) == MAX_OPEN + 11

    with_recorder(tmp_path, body)


def test_old_documents_without_a_count_still_read(tmp_path: Path) -> None:
    async def body(
        rec: EventRecorder, storage: DiskStorage, metrics: Metrics, clock: Clock
    ) -> None:
        old = {
            "kind": "invalid_content",
            "upstream": UP,
            "module": M,
            "version": V,
            "file": "info",
            "detail": "bad",
            "expected": None,
            "got": None,
            "time": 1.5,
            "future_field": True,
        }
        await storage.put_bytes(
            EVENTS_PREFIX + "1970-01-01/1500-abc.json", json.dumps(old).encode()
        )
        (ev,) = await rec.recent()
        assert (ev.count, ev.last, ev.time) == (1, 1.5, 1.5)

    with_recorder(tmp_path, body)


def test_a_full_disk_never_raises_and_is_logged_once_per_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(
        rec: EventRecorder, storage: DiskStorage, metrics: Metrics, clock: Clock
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="gomirror.monitor.events"):
            for i in range(50):
                await rec.bad_content(UP, M, f"v1.0.{i}", "info", InvalidContent("bad"))
        failures = [r for r in caplog.records if r.getMessage() == "event not stored"]
        assert len(failures) == 1
        assert all(r.exc_info is None for r in failures)  # no traceback for a known condition
        assert tamper_count(metrics, "invalid_content") == 50

    with_recorder(tmp_path, body, FullDisk)
