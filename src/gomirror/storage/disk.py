"""storage.disk stores objects as files under one root directory, laid out like a GOPROXY tree.

Because keys are escaped module paths (``github.com/!azure/x/@v/v1.0.0.zip``), the
root directory itself works as ``GOPROXY=file:///<root>``. Writes go to a temp
file in ``<root>/_gomirror/tmp`` (same file system), are flushed with fsync and
then renamed over the final name, and the directory is fsynced: after a crash
or ``kill -9`` a key holds either its old content or its complete new content.
Temp files left behind by a crash are never served and are swept at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat as stat_module
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

from gomirror.errors import StorageError
from gomirror.storage.base import ObjectInfo

TMP_SUBDIR = "_gomirror/tmp"
LOCK_SUBDIR = "_gomirror/locks"
LOCK_POLL_SECONDS = 0.01
SMALL_FILE_BYTES = 64 << 10  # .info, .mod and lists; zips are sent with sendfile instead
MEMO_BYTES = 32 << 20
STALE_TMP_SECONDS = 3600.0


def check_key(key: str) -> None:
    """Reject keys that could escape the root or collide with directories."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(f"invalid storage key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise StorageError(f"invalid storage key {key!r}")


def _storage_error(action: str, key: str, e: OSError) -> StorageError:
    if e.errno == errno.ENOSPC:
        return StorageError(f"cache disk full while {action} {key}")
    return StorageError(f"cache {action} {key} failed: {e.strerror or e}")


class DiskStorage:
    """A Storage on the local file system (see the module docstring)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._fsync = fsync
        self._tmp = root / TMP_SUBDIR
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create cache directory {root}: {e.strerror}") from None
        self._sweep_tmp()
        # Small objects read recently, keyed by path and checked against a fresh stat
        # (inode, mtime, size), so a replaced or deleted file is never served from here.
        self._memo: OrderedDict[str, tuple[tuple[int, int, int], bytes]] = OrderedDict()
        self._memo_bytes = 0

    def _sweep_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_SECONDS
        for p in self._tmp.iterdir():
            try:
                if p.stat().st_mtime < cutoff:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink()
            except OSError:
                pass

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key

    def temp_dir(self) -> Path:
        return self._tmp

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """A cross-process lock: ``flock`` on a per-key file, polled so no thread blocks."""
        check_key(key)
        lock_dir = self.root / LOCK_SUBDIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        fd = os.open(lock_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL_SECONDS)  # another process is fetching key
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def new_temp_path(self, suffix: str = "") -> Path:
        return self._tmp / f"{uuid.uuid4().hex}{suffix}"

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
            raise _storage_error("reading", key, e) from None
        if not os.path.isfile(p):
            return None
        return ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    async def local_path(self, key: str) -> Path | None:
        p = self.path(key)
        return p if p.is_file() else None

    async def put_bytes(self, key: str, data: bytes) -> None:
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
        await asyncio.to_thread(self._put_file_sync, key, src)

    def _put_file_sync(self, key: str, src: Path) -> None:
        try:
            if src.parent != self._tmp:
                tmp = self.new_temp_path()
                shutil.copyfile(src, tmp)
            else:
                tmp = src
            if self._fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
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

    async def read_to(self, key: str, dst: Path) -> bool:
        p = self.path(key)
        try:
            await asyncio.to_thread(shutil.copyfile, p, dst)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _storage_error("reading", key, e) from None
        return True

    async def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _storage_error("deleting", key, e) from None

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        base = self.root
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if rel.startswith(TMP_SUBDIR):
                dirnames[:] = []
                continue
            dirnames.sort()
            for name in sorted(filenames):
                key = rel + name
                if key.startswith(prefix):
                    yield key
