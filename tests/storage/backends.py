"""backends lists every Storage backend the compliance suite runs, and builds one by name.

Contract: ``BACKENDS`` names every backend; ``make_backend(name, root)`` returns
a fresh, empty-or-reopened Storage keeping its data under the local directory
``root`` (a backend that is not local keeps its scratch files there).

``stream-only`` stands in for an object store (S3) until that backend lands: it
is a ``DiskStorage`` whose ``local_path`` capability answers ``None``, so every
big object must be served through ``stream()``, as it will be from S3. When the
S3 backend arrives, add it here and every compliance test runs against it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from gomirror.storage.base import ObjectInfo, Storage
from gomirror.storage.disk import DiskStorage

BACKENDS = ("disk", "stream-only")


class StreamOnlyStorage:
    """A Storage without local files: everything but ``local_path`` is the wrapped DiskStorage."""

    def __init__(self, root: Path) -> None:
        self.inner = DiskStorage(root)

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def stat(self, key: str) -> ObjectInfo | None:
        return await self.inner.stat(key)

    async def put_bytes(self, key: str, data: bytes) -> None:
        await self.inner.put_bytes(key, data)

    async def put_file(self, key: str, src: Path) -> None:
        await self.inner.put_file(key, src)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        return self.inner.keys(prefix)

    async def local_path(self, key: str) -> Path | None:
        self.inner.path(key)  # still reject hostile keys, as every other call does
        return None  # an object store has no local file to sendfile from

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        return await self.inner.stream(key)

    async def presign(self, key: str, expires: float) -> str | None:
        return await self.inner.presign(key, expires)

    async def close(self) -> None:
        await self.inner.close()


def make_backend(name: str, root: Path) -> Storage:
    if name == "disk":
        return DiskStorage(root)
    if name == "stream-only":
        return StreamOnlyStorage(root)
    raise ValueError(f"unknown storage backend {name!r}")


def disk_of(storage: Storage) -> DiskStorage:
    """The DiskStorage holding a test backend's files (for planting gomirror's own litter)."""
    if isinstance(storage, DiskStorage):
        return storage
    if isinstance(storage, StreamOnlyStorage):
        return storage.inner
    raise TypeError(f"no local files behind {type(storage).__name__}")
