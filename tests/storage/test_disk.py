"""Tests for what only DiskStorage does: its file layout, its in-memory copies, ENOSPC via /dev/full."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from gomirror.errors import StorageError, StorageFull
from gomirror.storage.disk import DiskStorage

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def wrap() -> T:
        return await coro

    return asyncio.run(wrap())


def test_the_root_is_a_goproxy_file_tree(tmp_path: Path) -> None:
    """Keys are paths under the root, so ``GOPROXY=file://<root>`` serves the cache as is."""
    disk = DiskStorage(tmp_path / "cache")
    key = "example.com/!m/@v/v1.0.0.mod"
    run(disk.put_bytes(key, b"module example.com/M\n"))
    assert (tmp_path / "cache" / "example.com" / "!m" / "@v" / "v1.0.0.mod").read_bytes() == (
        b"module example.com/M\n"
    )
    assert run(disk.local_path(key)) == tmp_path / "cache" / key
    run(disk.close())


def test_an_unusable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(StorageError, match="cannot use cache directory"):
        DiskStorage(blocker / "cache")


def test_disk_full_is_storage_full_and_leaves_the_old_object(tmp_path: Path) -> None:
    """A write that fails midway leaves the old object in place and no partial file."""
    disk = DiskStorage(tmp_path / "cache")
    run(disk.put_bytes("m.example/a/@v/list", b"old\n"))
    # /dev/full makes every write fail with ENOSPC: a real full disk, not a mock.
    if not Path("/dev/full").exists():  # pragma: no cover - Linux always has it
        pytest.fail("/dev/full is required for this test")
    full = disk.temp_dir() / "x"
    full.symlink_to("/dev/full")

    def new_temp_path(suffix: str = "") -> Path:
        return full

    disk.new_temp_path = new_temp_path  # type: ignore[method-assign]
    with pytest.raises(StorageFull, match="cache full"):
        run(disk.put_bytes("m.example/a/@v/list", b"new\n" * 1000))
    assert run(disk.get("m.example/a/@v/list")) == b"old\n"
    assert not full.is_symlink()  # the failed temp file was removed
    run(disk.close())


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
    run(disk.close())


def test_check_writable_passes_on_a_writable_root(tmp_path: Path) -> None:
    disk = DiskStorage(tmp_path / "cache")
    disk.check_writable()
    assert [p.name for p in disk.temp_dir().iterdir()] == [".owner"]  # the probe is gone
    run(disk.close())
