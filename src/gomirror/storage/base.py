"""storage.base defines the Storage protocol every cache backend implements.

Keys are slash-separated strings laid out like a GOPROXY tree, already
case-escaped, for example ``github.com/!burnt!sushi/toml/@v/v1.6.0.zip`` or
``sumdb/sum.golang.org/tile/8/0/000``. Keys under ``_gomirror/`` hold
gomirror's own state (sidecars, tree heads, events) and are never served.

Contract:
- ``get``/``stat``/``open_file`` return ``None`` when the key is missing; they
  never raise for a missing key.
- ``put_bytes``/``put_file`` are atomic: a reader sees either the old object,
  or the complete new one, never a partial write, even across a crash.
- Backend failures raise ``gomirror.errors.StorageError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Facts about one stored object."""

    key: str
    size: int
    mtime: float  # seconds since the epoch, when the object was last written


class Storage(Protocol):
    """A flat key → bytes store with atomic writes (see the module docstring)."""

    async def get(self, key: str) -> bytes | None:
        """Return the whole object, or None if it is missing."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """Return size and mtime, or None if it is missing."""
        ...

    async def local_path(self, key: str) -> Path | None:
        """Return a local file holding the object (for zero-copy serving), or None.

        Backends without local files (object stores) always return None.
        """
        ...

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store data under key atomically, replacing any previous object."""
        ...

    async def put_file(self, key: str, src: Path) -> None:
        """Store the file at src under key atomically; src may be moved or consumed."""
        ...

    async def read_to(self, key: str, dst: Path) -> bool:
        """Copy the object into the local file dst; False if it is missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove key; missing keys are not an error."""
        ...

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over every key starting with prefix, in no particular order."""
        ...

    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """An exclusive lock on key shared by every process using this storage.

        Held while fetching key from upstream, so that several processes (or
        instances) sharing the cache fetch a missing file once. In-process
        callers are already deduplicated by ``SingleFlight``.
        """
        ...

    def temp_dir(self) -> Path:
        """A local directory for temporary files on the same file system as the cache."""
        ...
