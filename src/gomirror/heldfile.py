"""heldfile keeps a verified download readable after the cache refused it, to answer it uncached.

When the cache is full, a zip that was downloaded and verified into a temp
file cannot be stored, yet its bytes are right there. ``HeldFile.open(path)``
opens that file read-only *before* the store is attempted, so whatever the
store does with the name afterwards (a failed rename removes it; the caller
unlinks it anyway), the bytes stay readable through the descriptor until it
is closed, and the disk space comes back the moment it is.

One ``HeldFile`` may feed several answers at once (every request that waited
on the same download): ``chunks()`` is an independent reader each time
(``os.pread`` at its own offset, so readers never share a file position).
The descriptor is closed by ``close()`` or, for the pass-through answers,
when the last reader and answer holding it are gone (``__del__``): a client
that disconnects mid-answer, or a ``HEAD`` that never reads, still releases it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from gomirror.errors import StorageError

__all__ = ["CHUNK", "HeldFile"]

CHUNK = 256 << 10


class HeldFile:
    """An open read-only file of a known size (see the module docstring)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size

    @classmethod
    def open(cls, path: Path) -> HeldFile | None:
        """Open path for reading; None when it cannot be opened (then nothing is held)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            return None
        return cls(fd, size)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes from the start, in chunks; an independent reader each call."""
        offset = 0
        while offset < self.size:
            if self._fd < 0:
                raise StorageError("the held download was closed while it was being answered")
            # The file was just written: these reads come from the page cache, so they
            # are cheaper inline than a thread hop per chunk.
            data = os.pread(self._fd, min(CHUNK, self.size - offset), offset)
            if not data:
                raise StorageError("the held download is shorter than it was")
            offset += len(data)
            yield data

    def close(self) -> None:
        """Close the descriptor (once; later calls do nothing)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()
