"""storage.base defines the Storage protocol every cache backend implements: a store of module files.

Keys are slash-separated strings laid out like a GOPROXY tree, already
case-escaped, for example ``github.com/!burnt!sushi/toml/@v/v1.6.0.zip`` or
``sumdb/sum.golang.org/tile/8/0/000``. Keys under ``_gomirror/`` hold
gomirror's own state (sidecars, tree heads, events) and are never served.

Contract:
- ``get``/``stat`` return ``None`` when the key is missing; they never raise
  for a missing key.
- ``put_bytes``/``put_file`` are atomic: a reader sees either the old object
  or the complete new one, never a partial write, even across a crash.
- Backend failures raise ``gomirror.errors.StorageError`` (``StorageFull``
  when the backend has no space left).

Optional capabilities: a backend that cannot do one of these returns ``None``
and the service falls back to the next way of serving a big file:
- ``local_path``: a local file holding the object, for zero-copy ``sendfile``;
- ``stream``: the object as an async byte stream, for bounded-memory serving;
- ``presign``: a URL the client may fetch the object from directly.

Locks and single-flight are not storage's business: see ``gomirror.coordination``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

STREAM_CHUNK = 256 << 10


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

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store data under key atomically, replacing any previous object."""
        ...

    async def put_file(self, key: str, src: Path) -> None:
        """Store the local file src under key atomically; src may be moved or consumed."""
        ...

    async def delete(self, key: str) -> None:
        """Remove key; missing keys are not an error."""
        ...

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over every key starting with prefix, in no particular order."""
        ...

    async def local_path(self, key: str) -> Path | None:
        """A local file holding the object, or None (missing, or no local files here)."""
        ...

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        """The object as chunks of at most ``STREAM_CHUNK`` bytes, or None if missing/unsupported."""
        ...

    async def presign(self, key: str, expires: float) -> str | None:
        """A URL valid for ``expires`` seconds that serves the object, or None if unsupported."""
        ...

    async def close(self) -> None:
        """Release connections and other resources."""
        ...
