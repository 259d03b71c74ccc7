"""upstream.git_prebuild builds a direct-mode zip ahead of the request that will ask for it.

Contract: the go command asks for ``.info``, then ``.mod``, then ``.zip`` of a
version, one after the other. :class:`ZipPrebuilder` lets ``DirectUpstream``
start building the zip when the ``.info`` is asked for, so the build overlaps
the rest of the resolution (for an older tag, the shallow fetch of the newest
tag whose go.mod lists retractions) and the client's next round trips.
:meth:`start` begins a build for (module, version) unless one exists;
:meth:`take` hands a finished (or still running, then awaited) build over by
moving its file to ``dst`` and reports whether it did; a build that failed,
or that was made from another commit than the one the caller resolved, is not
taken, and the caller builds the zip itself and reports any error then.
At most ``limit`` builds are kept (the oldest is dropped); an unclaimed build
is deleted ``ttl`` seconds after it finishes; :meth:`close` cancels and
deletes everything. Builds live in one private temp directory per instance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Build (module, version) into the given path; return the commit it was made from.
Build = Callable[[str, str, Path], Coroutine[Any, Any, str]]


@dataclasses.dataclass
class _Entry:
    path: Path
    task: asyncio.Task[str]
    expiry: asyncio.TimerHandle | None = None


class ZipPrebuilder:
    """Speculative zip builds keyed by (module, version) (see the module docstring)."""

    def __init__(self, tmp_root: Path, build: Build, limit: int = 8, ttl: float = 60.0) -> None:
        self._tmp_root = tmp_root
        self._build = build
        self._limit = limit
        self._ttl = ttl
        self._dir: Path | None = None
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._seq = 0

    def _directory(self) -> Path:
        if self._dir is None:
            self._tmp_root.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="prebuilt-", dir=self._tmp_root))
        return self._dir

    def start(self, module: str, version: str) -> None:
        """Begin building (module, version) in the background, unless it is already there."""
        key = (module, version)
        if self._limit <= 0 or key in self._entries:
            return
        while len(self._entries) >= self._limit:
            self._drop(next(iter(self._entries)))
        self._seq += 1
        path = self._directory() / f"{self._seq}.zip"
        task = asyncio.get_running_loop().create_task(self._build(module, version, path))
        entry = _Entry(path, task)
        self._entries[key] = entry
        task.add_done_callback(lambda t: self._finished(key, entry, t))

    def _finished(self, key: tuple[str, str], entry: _Entry, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            # The real request builds again and reports the error; here it is only noise.
            log.debug("direct zip prebuild failed", extra={"mod_path": key[0], "version": key[1]})
        if self._entries.get(key) is entry:
            loop = asyncio.get_running_loop()
            entry.expiry = loop.call_later(self._ttl, self._drop_if, key, entry)

    def _drop_if(self, key: tuple[str, str], entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key)
        entry.task.cancel()
        if entry.expiry is not None:
            entry.expiry.cancel()
        if entry.task.done():
            entry.path.unlink(missing_ok=True)
        else:
            entry.task.add_done_callback(lambda _: entry.path.unlink(missing_ok=True))

    def discard(self, module: str, version: str) -> None:
        """Forget a build that will not be asked for."""
        if (module, version) in self._entries:
            self._drop((module, version))

    async def take(self, module: str, version: str, commit: str, dst: Path) -> bool:
        """Move the build of (module, version) made from commit to dst; report whether it did."""
        entry = self._entries.pop((module, version), None)
        if entry is None:
            return False
        if entry.expiry is not None:
            entry.expiry.cancel()
        try:
            built_from = await entry.task
        except asyncio.CancelledError:
            entry.path.unlink(missing_ok=True)
            raise
        except Exception:  # the caller builds again and reports the error
            entry.path.unlink(missing_ok=True)
            return False
        if built_from != commit:
            entry.path.unlink(missing_ok=True)
            return False
        try:
            entry.path.replace(dst)
        except OSError:
            # Another file system: copy, then drop the build.
            await asyncio.to_thread(shutil.copyfile, entry.path, dst)
            entry.path.unlink(missing_ok=True)
        return True

    async def close(self) -> None:
        """Cancel every build and delete the temp directory."""
        tasks = [e.task for e in self._entries.values()]
        for key in list(self._entries):
            self._drop(key)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._dir, True)
            self._dir = None
