"""monitor.readiness: ready only with a writable cache and a working route."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gomirror.errors import StorageError, StorageFull
from gomirror.monitor.readiness import Readiness
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.health import HealthBook


class Broken:
    def __init__(self, err: StorageError) -> None:
        self.err = err

    def check_writable(self) -> None:
        raise self.err


def test_ready_with_a_writable_cache_and_a_mirror_up(tmp_path: Path) -> None:
    disk = DiskStorage(tmp_path)
    state = asyncio.run(Readiness(disk, HealthBook(), ["https://a"], has_direct=False).check())
    assert state.ready and state.lines == ("cache: writable", "upstream: 1 of 1 mirrors up")
    asyncio.run(disk.close())


def test_not_ready_when_every_mirror_is_down_unless_direct_exists(tmp_path: Path) -> None:
    disk = DiskStorage(tmp_path)
    health = HealthBook()
    health.get("https://a").record_failure("timed out", timeout=True)
    state = asyncio.run(Readiness(disk, health, ["https://a"], has_direct=False).check())
    assert not state.ready and "every mirror is down" in state.lines[1]
    assert asyncio.run(Readiness(disk, health, ["https://a"], has_direct=True).check()).ready
    asyncio.run(disk.close())


def test_full_or_broken_cache_is_not_ready() -> None:
    health = HealthBook()
    full = asyncio.run(
        Readiness(Broken(StorageFull("no space")), health, ["m"], has_direct=False).check()
    )
    assert not full.ready and full.cache_full and full.lines[0].startswith("cache: full")
    ro = asyncio.run(
        Readiness(Broken(StorageError("read-only")), health, ["m"], has_direct=False).check()
    )
    assert not ro.ready and not ro.cache_full and "not writable" in ro.lines[0]


def test_the_disk_probe_is_cached_for_the_interval() -> None:
    calls = []
    now = [0.0]

    class Counting:
        def check_writable(self) -> None:
            calls.append(1)

    r = Readiness(Counting(), HealthBook(), ["m"], has_direct=False, clock=lambda: now[0])

    async def main() -> None:
        for _ in range(5):
            await r.check()
        now[0] = 10.0
        await r.check()

    asyncio.run(main())
    assert len(calls) == 2
