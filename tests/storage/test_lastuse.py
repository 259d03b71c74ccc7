"""Tests for storage.lastuse: version reads are recorded in memory and written in batches, never per hit.

A ``UseRecorder`` wraps a real ``DiskStorage`` whose ``put_bytes`` is counted:
a thousand hits of one version cost one small object at the next flush, and
none within ``REFRESH``; hits answered from the disk's in-memory copies count;
sidecars, lists, queries and state are not versions; a failed write keeps the
versions for the next flush; ``read_uses`` merges the objects and
``compact`` replaces them with one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gomirror.errors import StorageError
from gomirror.storage.disk import DiskStorage
from gomirror.storage.lastuse import (
    LASTUSE_PREFIX,
    REFRESH,
    UseRecorder,
    compact,
    read_uses,
    version_id,
)

V1 = "example.com/!foo/@v/v1.0.0"
V2 = "example.com/!foo/@v/v1.1.0"


class CountingDisk(DiskStorage):
    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self.puts: list[str] = []
        self.fail = False
        self.wrote = asyncio.Event()

    async def put_bytes(self, key: str, data: bytes) -> None:
        if self.fail:
            raise StorageError("cache full (no space left) while writing " + key)
        self.puts.append(key)
        await super().put_bytes(key, data)
        self.wrote.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_version_id() -> None:
    assert version_id(V1 + ".zip") == V1
    assert version_id(V1 + ".mod") == V1
    assert version_id(V1 + ".info") == V1
    for key in (
        V1 + ".zip.json",
        "example.com/!foo/@v/list",
        "example.com/!foo/@latest",
        "_gomirror/query/example.com/!foo/@v/master.info",
        "sumdb/sum.golang.org/tile/8/0/000",
        "/@v/v1.0.0.zip",
    ):
        assert version_id(key) is None, key


def test_hits_are_batched_and_memory_hits_count(tmp_path: Path) -> None:
    async def main() -> None:
        disk = CountingDisk(tmp_path)
        clock = Clock()
        rec = UseRecorder(disk, interval=0, clock=clock)
        await disk.put_bytes(V1 + ".mod", b"module example.com/Foo\n")
        await disk.put_bytes(V1 + ".zip", b"PK")
        await disk.put_bytes(V1 + ".mod.json", b"{}")
        await disk.put_bytes("example.com/!foo/@v/list", b"v1.0.0\n")
        disk.puts.clear()
        for _ in range(1000):  # after the first, DiskStorage answers from memory
            assert await rec.get(V1 + ".mod") is not None
        assert await rec.local_path(V1 + ".zip") is not None
        assert await rec.get(V1 + ".mod.json") == b"{}"
        assert await rec.get("example.com/!foo/@v/list") is not None
        assert await rec.get(V2 + ".mod") is None  # a miss is not a use
        assert await rec.stat(V1 + ".zip") is not None  # a stat is not a read
        assert disk.puts == []  # no write per hit
        assert await rec.flush() == 1
        assert len(disk.puts) == 1 and disk.puts[0].startswith(LASTUSE_PREFIX)
        uses, logs = await read_uses(disk)
        assert uses == {V1: clock.now} and logs == disk.puts

        # Within REFRESH, hits of a version already written write nothing more.
        clock.now += 60
        await rec.get(V1 + ".mod")
        assert await rec.flush() == 0 and len(disk.puts) == 1
        clock.now += REFRESH
        chunks = await rec.stream(V1 + ".zip")
        assert chunks is not None
        assert b"".join([c async for c in chunks]) == b"PK"
        assert await rec.flush() == 1
        uses, logs = await read_uses(disk)
        assert uses == {V1: clock.now} and len(logs) == 2

        await compact(disk, logs, uses, now=clock.now)
        uses2, logs2 = await read_uses(disk)
        assert uses2 == uses and len(logs2) == 1 and logs2[0] not in logs
        await compact(disk, logs2, {})
        assert await read_uses(disk) == ({}, [])

    asyncio.run(main())


def test_failed_write_is_retried_and_stop_flushes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        disk = CountingDisk(tmp_path)
        await disk.put_bytes(V2 + ".info", b'{"Version":"v1.1.0"}')
        rec = UseRecorder(disk, interval=0.05)
        rec.start()
        disk.fail = True
        await rec.get(V2 + ".info")
        assert await rec.flush() == 0
        assert await rec.flush() == 0  # still failing: logged once only
        disk.fail = False
        await rec.stop()  # the last flush writes what the failures kept
        uses, _ = await read_uses(disk)
        assert set(uses) == {V2}

        # The periodic flush runs on its own.
        rec2 = UseRecorder(disk, interval=0.02)
        rec2.start()
        disk.wrote.clear()
        await rec2.get(V2 + ".info")
        async with asyncio.timeout(10):
            await disk.wrote.wait()
        assert disk.puts[-1].startswith(LASTUSE_PREFIX)
        await rec2.stop()

    asyncio.run(main())
    assert [r.getMessage() for r in caplog.records].count("last use not recorded") == 1


def test_torn_objects_are_ignored(tmp_path: Path) -> None:
    async def main() -> None:
        disk = CountingDisk(tmp_path)
        await disk.put_bytes(LASTUSE_PREFIX + "1-torn.json", b'{"versions": {"')
        await disk.put_bytes(LASTUSE_PREFIX + "2-list.json", b"[1, 2]")
        good = {"versions": {V1: 5.0, V2: "x"}}
        await disk.put_bytes(LASTUSE_PREFIX + "3-good.json", json.dumps(good).encode())
        uses, logs = await read_uses(disk)
        assert uses == {V1: 5.0} and len(logs) == 3

    asyncio.run(main())
