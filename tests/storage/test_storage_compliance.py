"""The storage compliance suite: every Storage backend must pass every test here."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gomirror.errors import StorageError
from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage


@pytest.fixture(params=["disk"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "disk":
        yield DiskStorage(tmp_path / "cache")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_missing_keys_are_none(storage: Storage) -> None:
    assert run(storage.get("example.com/m/@v/v1.0.0.mod")) is None
    assert run(storage.stat("example.com/m/@v/v1.0.0.mod")) is None


def test_put_get_stat_delete(storage: Storage) -> None:
    key = "example.com/!m/@v/v1.0.0.mod"
    run(storage.put_bytes(key, b"module example.com/M\n"))
    assert run(storage.get(key)) == b"module example.com/M\n"
    st = run(storage.stat(key))
    assert st is not None and st.size == 21
    run(storage.put_bytes(key, b"x"))
    assert run(storage.get(key)) == b"x"
    run(storage.delete(key))
    assert run(storage.get(key)) is None
    run(storage.delete(key))  # missing is fine


def test_put_file_and_read_to(storage: Storage, tmp_path: Path) -> None:
    src = storage.temp_dir() / "upload"
    src.write_bytes(os.urandom(300_000))
    data = src.read_bytes()
    run(storage.put_file("a.example/m/@v/v1.0.0.zip", src))
    dst = tmp_path / "out"
    assert run(storage.read_to("a.example/m/@v/v1.0.0.zip", dst))
    assert dst.read_bytes() == data
    assert not run(storage.read_to("a.example/m/@v/v9.zip", tmp_path / "none"))


def test_keys_by_prefix(storage: Storage) -> None:
    for k in ("a.example/x/@v/list", "a.example/y/@v/list", "b.example/z/@latest"):
        run(storage.put_bytes(k, b"v1.0.0\n"))

    async def collect(prefix: str) -> list[str]:
        return sorted([k async for k in storage.keys(prefix)])

    assert run(collect("a.example/")) == ["a.example/x/@v/list", "a.example/y/@v/list"]
    assert "b.example/z/@latest" in run(collect(""))
    assert not any(k.startswith("_gomirror/tmp") for k in run(collect("")))


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b", "trailing/", "nul\x00"])
def test_hostile_keys_are_rejected(storage: Storage, key: str) -> None:
    with pytest.raises(StorageError):
        run(storage.put_bytes(key, b"x"))


def test_disk_full_is_a_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails midway leaves the old object in place and no partial file."""
    disk = DiskStorage(tmp_path / "cache")
    run(disk.put_bytes("m.example/a/@v/list", b"old\n"))
    # /dev/full makes every write fail with ENOSPC: a real full disk, not a mock.
    if not Path("/dev/full").exists():  # pragma: no cover - Linux always has it
        pytest.fail("/dev/full is required for this test")
    target = disk.temp_dir()
    disk_tmp = target / "x"
    disk_tmp.symlink_to("/dev/full")

    def new_temp_path(suffix: str = "") -> Path:
        return disk_tmp

    disk.new_temp_path = new_temp_path  # type: ignore[method-assign]
    with pytest.raises(StorageError, match="disk full"):
        run(disk.put_bytes("m.example/a/@v/list", b"new\n" * 1000))
    assert run(disk.get("m.example/a/@v/list")) == b"old\n"


def test_crash_leftovers_are_never_served_and_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    disk = DiskStorage(root)
    partial = disk.temp_dir() / "dl-partial.zip"
    partial.write_bytes(b"PK\x03\x04 half")
    old = 10_000
    os.utime(partial, (old, old))
    DiskStorage(root)  # a restart sweeps old temp files
    assert not partial.exists()


def test_rewritten_or_removed_objects_are_never_served_from_memory(tmp_path: Path) -> None:
    """DiskStorage keeps small objects in memory; a changed file must win over that copy."""
    disk = DiskStorage(tmp_path / "cache")
    key = "m.example/a/@v/v1.0.0.info"
    run(disk.put_bytes(key, b'{"Version":"v1.0.0"}'))
    assert run(disk.get(key)) == b'{"Version":"v1.0.0"}'
    assert run(disk.get(key)) == b'{"Version":"v1.0.0"}'  # served from memory
    run(disk.put_bytes(key, b'{"Version":"v1.0.1"}'))  # same size, new content
    assert run(disk.get(key)) == b'{"Version":"v1.0.1"}'
    # Changed in place by another process (e.g. an operator), not through DiskStorage.
    disk.path(key).write_bytes(b'{"Version":"v1.0.2","Time":"x"}')
    assert run(disk.get(key)) == b'{"Version":"v1.0.2","Time":"x"}'
    disk.path(key).unlink()
    assert run(disk.get(key)) is None
