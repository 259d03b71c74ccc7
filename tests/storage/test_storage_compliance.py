"""The storage compliance suite: every Storage backend in ``backends.BACKENDS`` passes every test here.

Backends today: ``disk`` (DiskStorage), ``stream-only`` (a DiskStorage without
the ``local_path`` capability) and ``s3`` (S3Storage over HTTP against a real S3
API server in its own process, see ``s3server``; see ``backends``). Tests use
only the ``Storage`` protocol, except where they plant gomirror's own litter
(temp files, lock files) to check it is never listed, and where "full" has to
be made: a tiny tmpfs for the local backends, a bucket quota for S3.

All ``run()`` calls of one test share one event loop, as a server process
does: an S3 client belongs to the loop it was made in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from gomirror.coordination.local import LocalCoordinator
from gomirror.errors import StorageError, StorageFull
from gomirror.storage.base import STREAM_CHUNK, Storage
from storage.backends import BACKENDS, disk_of, make_backend
from storage.s3server import S3Endpoint
from support.child import Child

T = TypeVar("T")
ZIP = "example.com/!m/@v/v1.0.0.zip"
_RUNNERS: list[asyncio.Runner] = []  # the current test's event loop (see run)


@pytest.fixture(autouse=True)
def _one_event_loop_per_test() -> Iterator[None]:
    with asyncio.Runner() as runner:
        _RUNNERS.append(runner)
        try:
            yield
        finally:
            _RUNNERS.remove(runner)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def s3(backend: str, request: pytest.FixtureRequest) -> S3Endpoint | None:
    """The S3 server's endpoint for the s3 backend (started on first use), else None."""
    if backend != "s3":
        return None
    endpoint: S3Endpoint = request.getfixturevalue("s3_server")
    return endpoint


@pytest.fixture
def storage(backend: str, s3: S3Endpoint | None, tmp_path: Path) -> Iterator[Storage]:
    st = make_backend(backend, tmp_path / "cache", s3)
    yield st
    run(st.close())


def run(coro: Awaitable[T]) -> T:
    """Run coro on this test's event loop."""

    async def wrap() -> T:
        return await coro

    return _RUNNERS[-1].run(wrap())


async def read_stream(storage: Storage, key: str) -> bytes | None:
    s = await storage.stream(key)
    if s is None:
        return None
    return b"".join([chunk async for chunk in s])


def test_missing_keys_are_none(storage: Storage) -> None:
    key = "example.com/m/@v/v1.0.0.mod"
    assert run(storage.get(key)) is None
    assert run(storage.stat(key)) is None
    assert run(storage.stream(key)) is None
    assert run(storage.local_path(key)) is None


def test_a_directory_is_not_an_object(storage: Storage) -> None:
    """``a/b`` existing makes ``a`` a prefix, not a key: reading ``a`` is a miss."""
    run(storage.put_bytes("example.com/m/@v/list", b"v1.0.0\n"))
    for key in ("example.com/m/@v", "example.com/m"):
        assert run(storage.get(key)) is None
        assert run(storage.stat(key)) is None
        assert run(storage.stream(key)) is None
        assert run(storage.local_path(key)) is None


def test_put_get_stat_delete(storage: Storage) -> None:
    key = "example.com/!m/@v/v1.0.0.mod"
    run(storage.put_bytes(key, b"module example.com/M\n"))
    assert run(storage.get(key)) == b"module example.com/M\n"
    st = run(storage.stat(key))
    assert st is not None and st.size == 21 and st.key == key and st.mtime > 0
    run(storage.put_bytes(key, b"x"))
    assert run(storage.get(key)) == b"x"
    assert run(storage.stat(key)) is not None
    run(storage.delete(key))
    assert run(storage.get(key)) is None
    assert run(storage.stat(key)) is None
    run(storage.delete(key))  # missing is fine
    run(storage.delete("never.example/x/@v/list"))  # and so is a missing parent


def test_put_file_round_trips_through_every_read_path(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "upload"
    data = os.urandom(300_000)
    src.write_bytes(data)
    run(storage.put_file(ZIP, src))
    assert run(storage.get(ZIP)) == data
    assert run(read_stream(storage, ZIP)) == data
    st = run(storage.stat(ZIP))
    assert st is not None and st.size == len(data)
    # Optional capabilities: None means "not here", anything else must be right.
    local = run(storage.local_path(ZIP))
    if local is not None:
        assert local.read_bytes() == data
    url = run(storage.presign(ZIP, 60))
    assert url is None or url.startswith(("http://", "https://"))


def test_the_empty_object_is_an_object(storage: Storage) -> None:
    run(storage.put_bytes("example.com/m/@v/list", b""))
    assert run(storage.get("example.com/m/@v/list")) == b""
    assert run(read_stream(storage, "example.com/m/@v/list")) == b""
    st = run(storage.stat("example.com/m/@v/list"))
    assert st is not None and st.size == 0


def test_stream_chunks_are_bounded_and_reassemble(storage: Storage) -> None:
    data = os.urandom(3 * STREAM_CHUNK + 17)
    run(storage.put_bytes(ZIP, data))

    async def chunks() -> list[bytes]:
        s = await storage.stream(ZIP)
        assert s is not None
        return [c async for c in s]

    got = run(chunks())
    assert len(got) >= 4
    assert all(0 < len(c) <= STREAM_CHUNK for c in got)
    assert b"".join(got) == data


def test_a_stream_opened_before_an_overwrite_reads_one_whole_version(storage: Storage) -> None:
    old, new = os.urandom(2 * STREAM_CHUNK + 5), os.urandom(STREAM_CHUNK + 9)

    async def main() -> bytes:
        await storage.put_bytes(ZIP, old)
        s = await storage.stream(ZIP)
        assert s is not None
        it = aiter(s)
        first = await anext(it)
        await storage.put_bytes(ZIP, new)
        rest = [c async for c in it]
        return first + b"".join(rest)

    assert run(main()) in (old, new)
    assert run(storage.get(ZIP)) == new


async def race_readers(
    storage: Storage,
    key: str,
    versions: tuple[bytes, bytes],
    write: Callable[[int], Awaitable[None]],
) -> set[bytes]:
    """Overwrite key 20 times while readers read it every way; return the versions they saw."""
    seen: set[bytes] = set()
    writer = asyncio.create_task(_write_all(write, 20))
    reads = 0
    while not writer.done():
        got = [await storage.get(key), await read_stream(storage, key)]
        local = await storage.local_path(key)
        if local is not None:
            with contextlib.suppress(FileNotFoundError):  # replaced between the two calls
                got.append(local.read_bytes())
        for data in got:
            # Never missing, never partial, never a mix: one version or the other.
            assert data in versions, f"read {None if data is None else len(data)} bytes"
            seen.add(data)
        reads += 1
        await asyncio.sleep(0)
    await writer
    assert reads > 1
    return seen


async def _write_all(write: Callable[[int], Awaitable[None]], n: int) -> None:
    for i in range(n):
        await write(i)


def test_put_bytes_is_atomic_for_concurrent_readers(storage: Storage) -> None:
    # Bigger than any in-memory copy, different sizes: a torn write would show.
    versions = (b"o" * 700_000, b"N" * 500_001)

    async def main() -> set[bytes]:
        await storage.put_bytes(ZIP, versions[0])

        async def write(i: int) -> None:
            await storage.put_bytes(ZIP, versions[(i + 1) % 2])

        return await race_readers(storage, ZIP, versions, write)

    assert run(main()) == set(versions)


def test_put_file_is_atomic_for_concurrent_readers(storage: Storage, tmp_path: Path) -> None:
    versions = (os.urandom(700_000), os.urandom(500_001))

    async def main() -> set[bytes]:
        await storage.put_bytes(ZIP, versions[0])

        async def write(i: int) -> None:
            src = tmp_path / f"src-{i}"
            src.write_bytes(versions[(i + 1) % 2])
            await storage.put_file(ZIP, src)

        return await race_readers(storage, ZIP, versions, write)

    assert run(main()) == set(versions)


def test_keys_by_prefix_skip_gomirrors_temp_and_lock_files(storage: Storage) -> None:
    for k in ("a.example/x/@v/list", "a.example/y/@v/list", "b.example/z/@latest"):
        run(storage.put_bytes(k, b"v1.0.0\n"))
    run(storage.put_bytes("_gomirror/events/e1.json", b"{}"))  # gomirror's own state is a key
    # Litter: a download in progress and a lock file left by a finished fetch.
    disk = disk_of(storage)
    disk.new_temp_path(".zip").write_bytes(b"PK\x03\x04 half")

    async def noop() -> None:
        return None

    run(LocalCoordinator(disk.lock_dir()).once("a.example/x/@v/v1.0.0.zip", noop))
    assert any(disk.lock_dir().iterdir()) and any(disk.temp_dir().iterdir())

    async def collect(prefix: str) -> list[str]:
        return sorted([k async for k in storage.keys(prefix)])

    assert run(collect("a.example/")) == ["a.example/x/@v/list", "a.example/y/@v/list"]
    assert run(collect("b.example/z/@latest")) == ["b.example/z/@latest"]
    assert run(collect("c.example/")) == []
    assert run(collect("")) == [
        "_gomirror/events/e1.json",
        "a.example/x/@v/list",
        "a.example/y/@v/list",
        "b.example/z/@latest",
    ]
    run(storage.delete("a.example/x/@v/list"))
    assert run(collect("a.example/")) == ["a.example/y/@v/list"]


HOSTILE_KEYS = [
    "",
    "/abs",
    "/etc/passwd",
    "..",
    "../escape",
    "a/../b",
    "a//b",
    "a/./b",
    "trailing/",
    "nul\x00",
    "a/nul\x00/b",
    "back\\slash",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_rejected_by_every_operation(
    storage: Storage, key: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.put_file(key, src),
        lambda: storage.get(key),
        lambda: storage.stat(key),
        lambda: storage.delete(key),
        lambda: storage.stream(key),
        lambda: storage.local_path(key),
    ]
    for call in calls:
        with pytest.raises(StorageError):
            run(call())
    assert not (tmp_path / "escape").exists()
    # A rejected write leaves no temp file behind either.
    assert [p.name for p in disk_of(storage).temp_dir().iterdir()] == [".owner"]


BIG_STREAM_SCRIPT = r"""
import asyncio, hashlib, json, os, resource, sys
from pathlib import Path
from storage.backends import make_backend
from storage.s3server import S3Endpoint
from gomirror.storage.base import STREAM_CHUNK

backend, root, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
s3 = S3Endpoint.from_json(sys.argv[4]) if sys.argv[4] else None
KEY = "example.com/big/@v/v1.0.0.zip"
MIB = 1 << 20


def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def main():
    st = make_backend(backend, root / "cache", s3)
    # A sparse file with random blocks at the start, middle and end: made in
    # milliseconds, but every byte still goes through the stream and the hash.
    src = root / "big.zip"
    with open(src, "wb") as f:
        f.truncate(size)
        for off in (0, size // 2, size - MIB):
            f.seek(off)
            f.write(os.urandom(MIB))
    want = hashlib.sha256()
    with open(src, "rb") as f:
        while block := f.read(MIB):
            want.update(block)
    assert await st.stat(KEY) is None  # a first request: clients are made and loaded by now
    start = peak_kib()
    await st.put_file(KEY, src)
    before = peak_kib()
    s = await st.stream(KEY)
    got, n, biggest = hashlib.sha256(), 0, 0
    async for chunk in s:
        got.update(chunk)
        n += len(chunk)
        biggest = max(biggest, len(chunk))
    after = peak_kib()
    local = await st.local_path(KEY)
    await st.close()
    print(json.dumps({
        "size": n, "same": got.digest() == want.digest(), "biggest": biggest,
        "chunk": STREAM_CHUNK, "growth_kib": after - before, "local": local is not None,
        "put_growth_kib": before - start,
    }), flush=True)


asyncio.run(main())
"""


def test_a_500_mib_object_streams_with_bounded_memory(
    backend: str, s3: S3Endpoint | None, tmp_path: Path
) -> None:
    """The whole point of ``stream()``: a backend without local files serves big zips in O(chunk) memory.

    Storing it is bounded too (S3: a multipart upload). Measured in a fresh
    subprocess with ``ru_maxrss`` (the kernel's peak RSS), so every allocation
    counts, not only Python's.
    """
    size = 500 << 20
    endpoint = s3.to_json() if s3 is not None else ""
    with Child.start(BIG_STREAM_SCRIPT, backend, str(tmp_path), str(size), endpoint) as child:
        report = json.loads(child.expect(timeout=300))
        assert child.wait() == 0, child.stderr()
    assert report["size"] == size
    assert report["same"], "the streamed bytes differ from the stored file"
    assert report["biggest"] <= report["chunk"]
    assert report["growth_kib"] < 64 << 10, f"peak RSS grew by {report['growth_kib']} KiB"
    assert report["put_growth_kib"] < 64 << 10, f"put grew RSS by {report['put_growth_kib']} KiB"
    assert report["local"] == (backend == "disk")


SMALL_FS_BYTES = 1 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, so a write fails with a real ENOSPC (needs root, as the test container has).

    Without permission to mount, the test is skipped; ``test_disk`` still covers
    ENOSPC for DiskStorage through ``/dev/full``.
    """
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    res = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={SMALL_FS_BYTES}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def files_under(root: Path) -> set[str]:
    """Every regular file below root, except the empty ``.owner`` lock files of live temp dirs."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != ".owner"
    }


async def fill_up(
    st: Storage,
    tmp_path: Path,
    key: str,
    leaves_nothing: Callable[[], Awaitable[None]],
    measure: Callable[[], None] = lambda: None,
) -> None:
    """Writes too big for the space left raise StorageFull, keep the old object, litter nothing.

    ``measure`` runs once the old object is stored; ``leaves_nothing`` after the failures.
    """
    try:
        await st.put_bytes(key, b"old\n")
        measure()
        src = tmp_path / "big.zip"  # on another file system: it must be copied in
        src.write_bytes(os.urandom(2 * SMALL_FS_BYTES))
        with pytest.raises(StorageFull):
            await st.put_file(key, src)
        with pytest.raises(StorageFull):
            await st.put_bytes(key, os.urandom(2 * SMALL_FS_BYTES))
        # The old object is intact, no partial object is left anywhere.
        assert await st.get(key) == b"old\n"
        assert await read_stream(st, key) == b"old\n"
        await leaves_nothing()
        # Once there is room, writing works again without a restart.
        await st.put_bytes(key, b"new\n")
        assert await st.get(key) == b"new\n"
    finally:
        await st.close()


def test_a_full_disk_raises_storage_full_and_leaves_nothing_behind(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key = "m.example/a/@v/v1.0.0.zip"
    if backend == "s3":
        # No disk to fill: a bucket quota, answered as Ceph RGW does (403 QuotaExceeded).
        endpoint: S3Endpoint = request.getfixturevalue("s3_server")
        st = make_backend(backend, tmp_path / "cache", endpoint, bucket=endpoint.quota_bucket)
        endpoint.set_quota(endpoint.quota_bucket, SMALL_FS_BYTES)

        async def no_partial_object() -> None:
            assert [k async for k in st.keys("")] == [key]
            info = await st.stat(key)
            assert info is not None and info.size == 4

        try:
            run(fill_up(st, tmp_path, key, no_partial_object))
        finally:
            endpoint.set_quota(endpoint.quota_bucket, None)
        return
    small_fs: Path = request.getfixturevalue("small_fs")
    st = make_backend(backend, small_fs / "cache")
    free: list[int] = []

    async def no_partial_file() -> None:
        assert files_under(small_fs) == {f"cache/{key}"}
        assert free_bytes(small_fs) >= free[0]  # the space is back

    run(fill_up(st, tmp_path, key, no_partial_file, lambda: free.append(free_bytes(small_fs))))
