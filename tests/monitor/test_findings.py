"""Tests for monitor.findings: the append-only, coalescing findings store.

The store runs over a real ``DiskStorage`` in a temp directory; "restart" means a
new ``FindingStore`` (and a new ``DiskStorage``) over the same directory. Time is
an injected clock, so durations and the ``seen`` marker cadence are exact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gomirror.errors import StorageError
from gomirror.monitor.findings import FINDINGS_PREFIX, FindingStore
from gomirror.storage.base import ObjectInfo
from gomirror.storage.disk import DiskStorage

T = TypeVar("T")
T0 = 1_700_000_000.0
LAG: dict[str, Any] = {
    "mirror": "http://slow.example",
    "module": "example.com/m",
    "version": "v1.2.0",
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def keys(storage: DiskStorage) -> list[str]:
    return sorted([k async for k in storage.keys(FINDINGS_PREFIX)])


def test_observe_opens_once_and_resolve_closes(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        store = FindingStore(DiskStorage(tmp_path), clock=clock)
        await store.ensure_loaded()
        f, new = await store.observe("lag", **LAG, said={"have": ["a"]}, detail="lacks it")
        assert new and f.open and f.first_seen == T0 and f.severity == "warning"
        clock.now += 30
        g, new = await store.observe("lag", **LAG, said={"have": ["a", "b"]})
        assert not new and g.id == f.id
        assert g.first_seen == T0 and g.last_seen == T0 + 30 and g.said == {"have": ["a", "b"]}
        assert g.detail == "lacks it"  # kept when not given again
        assert store.open("lag") == [g]
        assert store.open("lag", mirror="http://other") == []
        clock.now += 30
        r = await store.resolve("lag", **LAG, note="caught up")
        assert r is not None and r.resolved_at == T0 + 60 and r.duration(T0 + 999) == 60
        assert store.open() == [] and await store.resolve("lag", **LAG) is None
        assert store.recent(10) == [r]
        # The same problem coming back is a new finding.
        clock.now += 10
        h, new = await store.observe("lag", **LAG)
        assert new and h.id != f.id and h.first_seen == T0 + 70
        assert [x.id for x in store.recent(10)] == [h.id, r.id]

    run(body())


def test_repeated_observations_write_a_bounded_number_of_objects(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        disk = DiskStorage(tmp_path)
        store = FindingStore(disk, seen_every=600, clock=clock)
        await store.ensure_loaded()
        for _ in range(100):
            await store.observe("lag", **LAG)
            clock.now += 60  # 100 minutes in all
        names = [k.rsplit("/", 1)[1] for k in await keys(disk)]
        assert sum("-open-" in n for n in names) == 1
        # One "seen" marker per 10 minutes at most: 99 minutes after opening -> 9.
        assert sum("-seen-" in n for n in names) == 9
        assert len(names) == 10

    run(body())


def test_findings_survive_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        store = FindingStore(DiskStorage(tmp_path), seen_every=600, clock=clock)
        await store.ensure_loaded()
        lag, _ = await store.observe("lag", **LAG, said={"have": ["a"]}, detail="lacks v1.2.0")
        tamper, _ = await store.observe(
            "tamper",
            mirror="http://evil.example",
            module="example.com/m",
            version="v1.1.0",
            aspect="mod",
            said={"sumdb": "h1:good", "http://evil.example": "h1:bad"},
        )
        clock.now += 700
        await store.observe("lag", **LAG)  # writes a seen marker at T0+700
        clock.now += 100
        await store.observe("lag", **LAG)  # coalesced: memory only
        await store.resolve(
            "tamper",
            mirror="http://evil.example",
            module="example.com/m",
            version="v1.1.0",
            aspect="mod",
        )

        clock.now += 5
        again = FindingStore(DiskStorage(tmp_path), clock=clock)
        await again.ensure_loaded()
        [lag2] = again.open()
        assert (lag2.id, lag2.type, lag2.mirror, lag2.version) == (
            lag.id,
            "lag",
            LAG["mirror"],
            "v1.2.0",
        )
        assert (
            lag2.first_seen == T0 and lag2.said == {"have": ["a"]} and lag2.detail == "lacks v1.2.0"
        )
        assert lag2.last_seen == T0 + 700  # as of the last marker: coalescing costs precision
        [tamper2] = [f for f in again.recent() if f.type == "tamper"]
        assert tamper2.id == tamper.id and tamper2.resolved_at == T0 + 800
        assert tamper2.said["sumdb"] == "h1:good" and tamper2.severity == "critical"
        # The reloaded open finding keeps coalescing and resolves as usual.
        g, new = await again.observe("lag", **LAG)
        assert not new and g.id == lag.id
        assert (await again.resolve("lag", **LAG)) is not None

    run(body())


def test_objects_are_small_json_written_once(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        disk = DiskStorage(tmp_path)
        store = FindingStore(disk, seen_every=10, clock=clock)
        await store.ensure_loaded()
        await store.observe("lag", **LAG, said={"x": 1})
        first = await keys(disk)
        original = await disk.get(first[0])
        for _ in range(5):
            clock.now += 11
            await store.observe("lag", **LAG, said={"x": 2})
        await store.resolve("lag", **LAG)
        after = await keys(disk)
        assert after[: len(first)] == first and await disk.get(first[0]) == original
        assert len(after) == 7  # open + 5 seen + resolved
        sizes = [len(await disk.get(k) or b"") for k in after]
        assert all(0 < n < 2000 for n in sizes)
        opened = json.loads(original or b"")
        assert opened["op"] == "open" and opened["said"] == {"x": 1}

    run(body())


def test_retention_removes_old_resolved_findings_on_load(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        disk = DiskStorage(tmp_path)
        store = FindingStore(disk, clock=clock)
        await store.ensure_loaded()
        await store.observe("lag", **LAG)
        await store.resolve("lag", **LAG)
        await store.observe("info_mismatch", module="example.com/m", version="v1.0.0")
        clock.now += 40 * 86400
        again = FindingStore(disk, retention=30 * 86400, clock=clock)
        await again.ensure_loaded()
        assert [f.type for f in again.recent()] == ["info_mismatch"]  # open ones are kept
        assert len(await keys(disk)) == 1

    run(body())


def test_duplicate_open_findings_from_two_instances_are_merged(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        a = FindingStore(DiskStorage(tmp_path), clock=clock)
        b = FindingStore(DiskStorage(tmp_path), clock=clock)
        await a.ensure_loaded()
        await b.ensure_loaded()
        fa, _ = await a.observe("lag", **LAG)
        clock.now += 1
        await b.observe("lag", **LAG)  # b never saw a's finding: shared storage, no index sharing
        c = FindingStore(DiskStorage(tmp_path), clock=clock)
        await c.ensure_loaded()
        assert [f.id for f in c.open()] == [fa.id]
        d = FindingStore(DiskStorage(tmp_path), clock=clock)
        await d.ensure_loaded()  # the merge was written down: stable on the next load
        assert [f.id for f in d.open()] == [fa.id]

    run(body())


def test_resolved_findings_in_memory_are_bounded(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        store = FindingStore(DiskStorage(tmp_path), keep_resolved=5, clock=clock)
        await store.ensure_loaded()
        for i in range(20):
            await store.observe("lag", **{**LAG, "version": f"v1.0.{i}"})
            clock.now += 1
            await store.resolve("lag", **{**LAG, "version": f"v1.0.{i}"})
        recent = store.recent(100)
        assert [f.version for f in recent] == [f"v1.0.{i}" for i in range(19, 14, -1)]

    run(body())


class BrokenStorage:
    """A Storage whose every operation fails, as an unreachable object store would."""

    async def get(self, key: str) -> bytes | None:
        raise StorageError("down")

    async def stat(self, key: str) -> ObjectInfo | None:
        raise StorageError("down")

    async def put_bytes(self, key: str, data: bytes) -> None:
        raise StorageError("down")

    async def put_file(self, key: str, src: Path) -> None:
        raise StorageError("down")

    async def delete(self, key: str) -> None:
        raise StorageError("down")

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        raise StorageError("down")
        yield ""  # pragma: no cover - makes this an async generator

    async def local_path(self, key: str) -> Path | None:
        return None

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        return None

    async def presign(self, key: str, expires: float) -> str | None:
        return None

    async def close(self) -> None:
        return None


def test_storage_failures_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        store = FindingStore(BrokenStorage(), clock=Clock())
        await store.ensure_loaded()
        f, new = await store.observe("tamper", **LAG, aspect="mod")
        assert new and store.current(f.identity) == f
        assert await store.resolve("tamper", **LAG, aspect="mod") is not None

    run(body())
    assert "finding not stored" in caplog.text and "findings not loaded" in caplog.text
