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


# --- shared object storage (S3) ------------------------------------------------


class Hanging:
    """A store that never answers its reachability check."""

    async def check(self) -> None:
        await asyncio.Event().wait()


def test_an_s3_bucket_is_checked_and_a_stopped_server_makes_it_not_ready(tmp_path: Path) -> None:
    from gomirror.storage.s3 import S3Settings, S3Storage
    from storage.s3server import S3Server

    server = S3Server.start(tmp_path / "moto")
    ep = server.endpoint
    disk = DiskStorage(tmp_path / "cache")
    now = [0.0]

    async def main() -> None:
        s3 = S3Storage(
            S3Settings(
                bucket=ep.bucket,
                endpoint=ep.url,
                region=ep.region,
                access_key=ep.access_key,
                secret_key=ep.secret_key,
                addressing="path",
                max_attempts=1,
                connect_timeout=1.0,
                read_timeout=1.0,
            )
        )
        r = Readiness(disk, HealthBook(), ["m"], has_direct=False, remote=s3, clock=lambda: now[0])
        up = await r.check()
        assert up.ready and up.lines == (
            "cache: writable",
            "upstream: 1 of 1 mirrors up",
            "storage: reachable",
        )
        server.stop()
        assert (await r.check()).ready  # cached for the interval: no request per probe
        now[0] = 10.0
        down = await r.check()
        assert not down.ready and down.lines[2].startswith("storage: unreachable: ")
        assert ep.secret_key not in "".join(down.lines)
        await s3.close()

    try:
        asyncio.run(main())
    finally:
        server.stop()
        asyncio.run(disk.close())


def test_a_store_that_does_not_answer_times_out(tmp_path: Path) -> None:
    disk = DiskStorage(tmp_path)
    r = Readiness(
        disk, HealthBook(), ["m"], has_direct=False, remote=Hanging(), storage_timeout=0.1
    )
    state = asyncio.run(r.check())
    assert not state.ready
    assert state.lines[2] == "storage: unreachable: no answer within 0.1 s"
    asyncio.run(disk.close())


def test_degraded_coordination_is_reported_but_still_ready(tmp_path: Path) -> None:
    disk = DiskStorage(tmp_path)
    r = Readiness(disk, HealthBook(), ["m"], has_direct=False, degraded=lambda: True)
    state = asyncio.run(r.check())
    assert state.ready and state.lines[-1].startswith("coordination: degraded")
    asyncio.run(disk.close())
