"""storage.lastuse records which module versions are read, in batches, so ``cache gc`` knows what is in use without a write per hit.

:class:`UseRecorder` wraps a ``Storage``. Every successful read of a module
version's file (``get``, ``local_path``, ``stream`` or ``presign`` of
``<esc>/@v/<v>.info|.mod|.zip``), whether the backend answers it from disk,
from its in-memory copies (``storage.disk``'s small-object memory,
``storage.readcache`` for object stores) or with a redirect, adds the
version's id ``<esc>/@v/<v>`` to an in-memory set: a hit costs one set
insertion and no I/O. Every ``interval`` seconds, and when the recorder is
closed, the set is written as one small object
``_gomirror/lastuse/<ms>-<random>.json`` holding ``{"versions": {id: time}}``.
A version this process wrote less than ``REFRESH`` seconds ago is left out
(gc counts in hours and days), so a steady workload writes at most one small
object per interval, naming only the versions it newly used. A failed write
is logged once and the versions are kept for the next flush.

This works on every backend and mount: access times need a local file system
without ``noatime``, and an in-memory hit touches no file at all.
:func:`read_uses` merges every log object into ``{id: newest time}`` for gc;
:func:`compact` replaces the objects gc read by one holding what survived,
so the log stays as small as the set of cached versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path

from gomirror.errors import StorageError
from gomirror.storage.base import ObjectInfo, Storage

log = logging.getLogger(__name__)
LASTUSE_PREFIX = "_gomirror/lastuse/"
DEFAULT_INTERVAL = 60.0
REFRESH = 3600.0  # a version logged this recently is not logged again
MAX_REMEMBERED = 100_000  # versions whose last write this process remembers
VERSION_EXTS = (".info", ".mod", ".zip")


def version_id(key: str) -> str | None:
    """``<esc>/@v/<v>`` for a version file's key; None for anything else (sidecars, state, lists)."""
    if key.startswith("_gomirror/") or not key.endswith(VERSION_EXTS):
        return None
    base, sep, name = key.rpartition("/@v/")
    if not sep or not base or "/" in name:
        return None
    return f"{base}/@v/{name.rpartition('.')[0]}"


class UseRecorder:
    """A Storage that records version reads and writes them in batches (see the module docstring)."""

    def __init__(
        self,
        inner: Storage,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.interval = interval
        self._clock = clock
        self._pending: set[str] = set()
        self._written: OrderedDict[str, float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def touch(self, key: str) -> None:
        """Record a read of key (a no-op unless it is a version file)."""
        vid = version_id(key)
        if vid is not None:
            self._pending.add(vid)

    def start(self) -> None:
        """Flush every ``interval`` seconds from now on (needs a running loop)."""
        if self._task is None and self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lastuse")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> int:
        """Write the versions read since the last flush; returns how many were written."""
        now = self._clock()
        due = sorted(v for v in self._pending if now - self._written.get(v, -REFRESH) >= REFRESH)
        self._pending.clear()
        if not due:
            return 0
        key = f"{LASTUSE_PREFIX}{int(now * 1000)}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        body = json.dumps({"versions": dict.fromkeys(due, now)}, sort_keys=True).encode()
        try:
            await self.inner.put_bytes(key, body)
        except StorageError as e:
            self._pending.update(due)  # try again next time
            if not self._failed:
                self._failed = True
                log.warning("last use not recorded", extra={"reason": str(e)[:200]})
            return 0
        self._failed = False
        for v in due:
            self._written[v] = now
            self._written.move_to_end(v)
        while len(self._written) > MAX_REMEMBERED:
            self._written.popitem(last=False)
        return len(due)

    async def stop(self) -> None:
        """Stop the periodic flush and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    # --- Storage ---------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        data = await self.inner.get(key)
        if data is not None:
            self.touch(key)
        return data

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
        path = await self.inner.local_path(key)
        if path is not None:
            self.touch(key)
        return path

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        chunks = await self.inner.stream(key)
        if chunks is not None:
            self.touch(key)
        return chunks

    async def presign(self, key: str, expires: float) -> str | None:
        url = await self.inner.presign(key, expires)
        if url is not None:
            self.touch(key)
        return url

    async def close(self) -> None:
        await self.stop()
        await self.inner.close()


# --- reading the log (cache gc) -------------------------------------------------------


async def read_uses(storage: Storage) -> tuple[dict[str, float], list[str]]:
    """Every recorded use merged to ``{id: newest time}``, and the log objects read."""
    uses: dict[str, float] = {}
    keys = sorted([k async for k in storage.keys(LASTUSE_PREFIX)])
    read: list[str] = []
    for key in keys:
        data = await storage.get(key)
        if data is None:
            continue
        read.append(key)
        try:
            versions = json.loads(data).get("versions", {})
        except (ValueError, AttributeError):
            continue  # a torn or foreign object: it goes at the next compaction
        if not isinstance(versions, dict):
            continue
        for vid, t in versions.items():
            if isinstance(vid, str) and isinstance(t, int | float):
                uses[vid] = max(uses.get(vid, 0.0), float(t))
    return uses, read


async def compact(
    storage: Storage, read: Iterable[str], uses: Mapping[str, float], *, now: float | None = None
) -> None:
    """Replace the log objects in read by one holding uses (written first, then the old ones go)."""
    read = list(read)
    if len(read) <= 1 and not uses:
        for key in read:
            await storage.delete(key)
        return
    now = time.time() if now is None else now
    if uses:
        key = f"{LASTUSE_PREFIX}{int(now * 1000)}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        body = json.dumps({"versions": dict(uses)}, sort_keys=True).encode()
        await storage.put_bytes(key, body)
    for key in read:
        await storage.delete(key)
