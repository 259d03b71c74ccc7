"""Tests for storage.tempfiles: temp files of dead processes go away, live ones stay (issue 12, defect 6).

Each "other process" is a real child (``support.child``) with a DiskStorage on
the same cache root. It prints the temp file it wrote, then waits on stdin; the
test either closes stdin (a clean exit) or sends SIGKILL (no clean-up at all).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gomirror.storage.disk import TMP_SUBDIR, DiskStorage
from gomirror.storage.tempfiles import LOOSE_FILE_MAX_AGE, OWNER_FILE, TempArea
from support.child import Child

WRITER_SCRIPT = r"""
import asyncio, sys
from pathlib import Path
from gomirror.storage.disk import DiskStorage

disk = DiskStorage(Path(sys.argv[1]))
tmp = disk.new_temp_path(".zip")
tmp.write_bytes(b"PK\x03\x04 half a download")
print(tmp, flush=True)
sys.stdin.read()  # until the test closes stdin, or kills us
asyncio.run(disk.close())
"""


def start_writer(root: Path) -> tuple[Child, Path]:
    child = Child.start(WRITER_SCRIPT, str(root))
    return child, Path(child.expect())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def open_disks() -> Iterator[list[DiskStorage]]:
    disks: list[DiskStorage] = []
    yield disks
    for d in disks:
        asyncio.run(d.close())


def test_a_killed_process_temp_dir_is_removed_at_start_up(
    root: Path, open_disks: list[DiskStorage]
) -> None:
    child, tmp = start_writer(root)
    assert tmp.is_file() and tmp.parent.parent == root / TMP_SUBDIR
    child.kill()
    child.stop()
    assert tmp.exists()  # SIGKILL: nothing cleaned up after itself
    open_disks.append(DiskStorage(root))  # a restart
    assert not tmp.parent.exists()


def test_a_live_process_temp_dir_is_never_removed(
    root: Path, open_disks: list[DiskStorage]
) -> None:
    with Child.start(WRITER_SCRIPT, str(root)) as live:
        live_tmp = Path(live.expect())
        dead, dead_tmp = start_writer(root)
        dead.kill()
        dead.stop()
        disk = DiskStorage(root)
        open_disks.append(disk)
        assert not dead_tmp.parent.exists()
        assert live_tmp.read_bytes() == b"PK\x03\x04 half a download"
        assert disk.sweep_temp() == 0  # sweeping again still spares the live one
        assert live_tmp.exists()
        assert live.wait() == 0, live.stderr()
    assert not live_tmp.parent.exists()  # a clean exit removes its own directory


def test_a_running_instance_sweeps_a_dead_neighbour(
    root: Path, open_disks: list[DiskStorage]
) -> None:
    """Any instance sharing the cache removes dead ones' files, not only the next to start."""
    disk = DiskStorage(root)
    open_disks.append(disk)
    mine = disk.new_temp_path(".zip")
    mine.write_bytes(b"my download")
    child, tmp = start_writer(root)
    child.kill()
    child.stop()
    assert disk.sweep_temp() == 1
    assert not tmp.parent.exists()
    assert mine.read_bytes() == b"my download"


def test_another_instance_in_the_same_process_is_live(
    root: Path, open_disks: list[DiskStorage]
) -> None:
    """flock locks belong to open files, so two instances in one process spare each other."""
    first = DiskStorage(root)
    open_disks.append(first)
    tmp = first.new_temp_path()
    tmp.write_bytes(b"x")
    open_disks.append(DiskStorage(root))
    assert tmp.exists()


def test_old_loose_files_are_removed_and_fresh_ones_kept(
    root: Path, open_disks: list[DiskStorage]
) -> None:
    base = root / TMP_SUBDIR
    base.mkdir(parents=True)
    old = base / "dl-old.zip"  # left by an older layout that wrote straight into tmp/
    fresh = base / "dl-fresh.zip"
    for p in (old, fresh):
        p.write_bytes(b"PK")
    long_ago = fresh.stat().st_mtime - LOOSE_FILE_MAX_AGE - 60
    os.utime(old, (long_ago, long_ago))
    open_disks.append(DiskStorage(root))
    assert not old.exists()
    assert fresh.exists()


def test_directories_without_an_owner_are_removed_only_when_old(
    root: Path, open_disks: list[DiskStorage]
) -> None:
    base = root / TMP_SUBDIR
    base.mkdir(parents=True)
    old_dir, fresh_dir = base / "host-1-aaaa", base / "host-2-bbbb"
    for d in (old_dir, fresh_dir):
        d.mkdir()
        (d / "dl.zip").write_bytes(b"PK")
    long_ago = fresh_dir.stat().st_mtime - LOOSE_FILE_MAX_AGE - 60
    os.utime(old_dir, (long_ago, long_ago))
    open_disks.append(DiskStorage(root))
    assert not old_dir.exists()
    assert (fresh_dir / "dl.zip").exists()  # maybe an owner about to lock it


def test_temp_files_are_never_listed_or_served(root: Path, open_disks: list[DiskStorage]) -> None:
    child, tmp = start_writer(root)
    try:
        disk = DiskStorage(root)
        open_disks.append(disk)

        async def keys() -> list[str]:
            return [k async for k in disk.keys("")]

        assert asyncio.run(keys()) == []
        assert tmp.exists()
    finally:
        child.stop()


def test_close_removes_its_own_directory(tmp_path: Path) -> None:
    area = TempArea(tmp_path / "tmp")
    assert (area.dir / OWNER_FILE).is_file()
    area.path(".zip").write_bytes(b"x")
    area.close()
    assert not area.dir.exists()
    assert list((tmp_path / "tmp").iterdir()) == []
