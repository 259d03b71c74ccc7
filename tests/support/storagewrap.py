"""storagewrap holds a Storage that forwards every call to another Storage.

Contract: ``Passthrough(inner)`` behaves exactly as ``inner``; a test subclasses
it and overrides the one call whose behaviour it changes (fail a write, hide
local files, record an order), so each such double states only its difference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Generic, TypeVar

from gomirror.storage.base import ObjectInfo, Storage

S = TypeVar("S", bound=Storage)


class Passthrough(Generic[S]):
    """A Storage that forwards everything to ``inner``; subclasses change one thing."""

    def __init__(self, inner: S) -> None:
        self.inner = inner

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
        return await self.inner.local_path(key)

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        return await self.inner.stream(key)

    async def presign(self, key: str, expires: float) -> str | None:
        return await self.inner.presign(key, expires)

    async def close(self) -> None:
        await self.inner.close()
