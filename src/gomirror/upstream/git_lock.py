"""upstream.git_lock serialises changes to one bare git repository, within and across processes.

Contract: :class:`RepoLock` guards a cache repository while it is created,
fetched into or configured. :meth:`RepoLock.hold` first takes an in-process
``asyncio.Lock`` (so tasks of one process queue without polling), then an
exclusive ``flock`` on a lock file next to the repository, so several gomirror
workers or instances sharing ``cache_dir`` never run two fetches into one
repository at once. The kernel drops the ``flock`` when its holder dies, so a
killed worker never blocks a repository. Waiting for another process polls
(non-blocking ``flock`` with a short back-off, cancellable at any moment) and
gives up with ``UpstreamError`` after ``wait_limit`` seconds. Reading
commands (``log``, ``cat-file``, ``archive``) need no lock: git writes objects
before the refs and shallow file that name them, each by atomic rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from gomirror.errors import UpstreamError

log = logging.getLogger(__name__)

_POLL_FIRST = 0.002
_POLL_MAX = 0.05


class RepoLock:
    """An asyncio lock plus an ``flock`` on ``path`` (see the module docstring)."""

    def __init__(self, path: Path, wait_limit: float) -> None:
        self.path = path
        self._wait_limit = wait_limit
        self._local = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the repository exclusively for the duration of the block."""
        async with self._local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                await self._flock(fd)
                yield
            finally:
                os.close(fd)  # closing the descriptor drops the flock

    async def _flock(self, fd: int) -> None:
        delay = _POLL_FIRST
        deadline = time.monotonic() + self._wait_limit
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not announced:
                # Tests wait for this line to know a fetch is queued behind another process.
                log.debug("git repository busy", extra={"lock": str(self.path)})
                announced = True
            if time.monotonic() >= deadline:
                raise UpstreamError(f"git cache repository stayed locked for {self._wait_limit:g}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
