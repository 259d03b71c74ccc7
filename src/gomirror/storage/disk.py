"""storage.disk stores objects as files under one root directory, laid out like a GOPROXY tree.

Because keys are escaped module paths (``github.com/!azure/x/@v/v1.0.0.zip``), the
root directory itself works as ``GOPROXY=file:///<root>``. Writes go to a temp
file in this process's directory under ``<root>/_gomirror/tmp`` (same file
system; see ``storage.tempfiles``), are flushed with fsync and then renamed
over the final name, and the directory is fsynced: after a crash or ``kill -9``
a key holds either its old content or its complete new content. Temp files of
dead processes are never served and are swept at start-up. A full disk raises
``StorageFull``. Small objects read recently are kept in memory, checked
against a fresh ``stat`` so a replaced or deleted file is never served from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import stat as stat_module
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from gomirror.errors import StorageError, StorageFull
from gomirror.storage.base import STREAM_CHUNK, ObjectInfo
from gomirror.storage.tempfiles import TempArea

TMP_SUBDIR = "_gomirror/tmp"
LOCK_SUBDIR = "_gomirror/locks"
SMALL_FILE_BYTES = 64 << 10  # .info, .mod and lists; zips are sent with sendfile instead
MEMO_BYTES = 32 << 20


def check_key(key: str) -> None:
    """Reject keys that could escape the root or collide with directories."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(f"invalid storage key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise StorageError(f"invalid storage key {key!r}")


def _storage_error(action: str, key: str, e: OSError) -> StorageError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"cache full (no space left) while {action} {key}")
    return StorageError(f"cache {action} {key} failed: {e.strerror or e}")


class DiskStorage:
    """A Storage on the local file system (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._fsync = fsync
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._temp = TempArea(root / TMP_SUBDIR)
        except OSError as e:
            raise StorageError(f"cannot use cache directory {root}: {e.strerror or e}") from None
        self._tmp = self._temp.dir
        self._memo: OrderedDict[str, tuple[tuple[int, int, int], bytes]] = OrderedDict()
        self._memo_bytes = 0

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key

    def temp_dir(self) -> Path:
        """This process's temp directory, on the cache's file system (renames are cheap)."""
        return self._tmp

    def lock_dir(self) -> Path:
        """Where cross-process lock files for this cache live."""
        return self.root / LOCK_SUBDIR

    def new_temp_path(self, suffix: str = "") -> Path:
        return self._temp.path(suffix)

    def sweep_temp(self) -> int:
        """Remove temp files of dead processes now (also done at start-up)."""
        return self._temp.sweep()

    def check_writable(self) -> None:
        """Raise StorageError unless a small file can be written and removed (start-up, /readyz)."""
        probe = self.new_temp_path(".probe")
        try:
            with open(probe, "wb") as f:
                f.write(b"ok")
            probe.unlink()
        except OSError as e:
            with contextlib.suppress(OSError):
                probe.unlink()
            raise _storage_error("writing", str(probe.relative_to(self.root)), e) from None

    async def close(self) -> None:
        self._temp.close()

    async def get(self, key: str) -> bytes | None:
        p = self.path(key)
        try:
            st = os.stat(p)
            if not stat_module.S_ISREG(st.st_mode):
                return None
            ident = (st.st_ino, st.st_mtime_ns, st.st_size)
            memo = self._memo.get(key)
            if memo is not None and memo[0] == ident:
                self._memo.move_to_end(key)
                return memo[1]
            data = p.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                return None  # no file can have such a name here: not cached
            raise _storage_error("reading", key, e) from None
        if len(data) == st.st_size and len(data) <= SMALL_FILE_BYTES:
            self._remember(key, ident, data)
        return data

    def _remember(self, key: str, ident: tuple[int, int, int], data: bytes) -> None:
        old = self._memo.pop(key, None)
        if old is not None:
            self._memo_bytes -= len(old[1])
        self._memo[key] = (ident, data)
        self._memo_bytes += len(data)
        while self._memo_bytes > MEMO_BYTES:
            _, (_, dropped) = self._memo.popitem(last=False)
            self._memo_bytes -= len(dropped)

    async def stat(self, key: str) -> ObjectInfo | None:
        p = self.path(key)
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                return None  # no file can have such a name here: not cached
            raise _storage_error("reading", key, e) from None
        if not os.path.isfile(p):
            return None
        return ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    async def local_path(self, key: str) -> Path | None:
        p = self.path(key)
        try:
            return p if p.is_file() else None
        except OSError:
            return None

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        p = self.path(key)
        try:
            f = open(p, "rb")  # noqa: SIM115, ASYNC230 - closed by the generator; open is cheap
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                return None  # no file can have such a name here: not cached
            raise _storage_error("reading", key, e) from None
        return _chunks(f)

    async def presign(self, key: str, expires: float) -> str | None:
        return None  # local files have no URL of their own

    async def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)  # before a temp file exists, so a bad key leaves none behind
        await asyncio.to_thread(self._put_bytes_sync, key, data)

    def _put_bytes_sync(self, key: str, data: bytes) -> None:
        tmp = self.new_temp_path()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _storage_error("writing", key, e) from None
        self._commit(tmp, key)

    async def put_file(self, key: str, src: Path) -> None:
        check_key(key)  # before a temp file exists, so a bad key leaves none behind
        await asyncio.to_thread(self._put_file_sync, key, src)

    def _put_file_sync(self, key: str, src: Path) -> None:
        try:
            if src.parent == self._tmp:
                tmp = src
            else:
                tmp = self.new_temp_path()
                try:
                    os.link(src, tmp)  # same file system: no copy
                except OSError:
                    shutil.copyfile(src, tmp)
            if self._fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            if tmp != src:  # a partial copy (ENOSPC) must not keep the disk full
                tmp.unlink(missing_ok=True)
            raise _storage_error("writing", key, e) from None
        self._commit(tmp, key)

    def _commit(self, tmp: Path, key: str) -> None:
        dst = self.path(key)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
            if self._fsync:
                dfd = os.open(dst.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _storage_error("writing", key, e) from None

    async def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _storage_error("deleting", key, e) from None

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # The walk starts at the prefix's directory and runs in a worker thread:
        # listing one module's files must not scan (or stall on) the whole cache.
        for key in await asyncio.to_thread(self._list_keys, prefix):
            yield key

    def _list_keys(self, prefix: str) -> list[str]:
        start_rel = prefix.rpartition("/")[0]
        start = self.root / start_rel if start_rel else self.root
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if rel.startswith((TMP_SUBDIR, LOCK_SUBDIR, "_gomirror/run")):
                dirnames[:] = []
                continue
            dirnames[:] = sorted(
                d
                for d in dirnames
                if (rel + d + "/").startswith(prefix) or prefix.startswith(rel + d + "/")
            )
            for name in sorted(filenames):
                key = rel + name
                if key.startswith(prefix):
                    found.append(key)
        return found


async def _chunks(f: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(f.read, STREAM_CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        f.close()
