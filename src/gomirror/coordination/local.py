"""coordination.local is the one-machine Coordinator: in-process single-flight plus ``flock``.

Concurrent callers in one process share one run (``SingleFlight``); across
processes sharing ``lock_dir`` (``--workers N``, or several gomirrors on one
cache directory) the run holds an exclusive ``flock`` on a per-key file, polled
so no thread blocks. The kernel releases the lock when its holder dies, so a
``kill -9`` never leaves a key locked. With ``lock_dir=None`` only the
in-process part is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from gomirror.coordination.singleflight import SingleFlight

T = TypeVar("T")
LOCK_POLL_SECONDS = 0.01


class LocalCoordinator:
    """A Coordinator for one machine (see the module docstring)."""

    def __init__(self, lock_dir: Path | None) -> None:
        self._lock_dir = lock_dir
        self.flights = SingleFlight()
        if lock_dir is not None:
            lock_dir.mkdir(parents=True, exist_ok=True)

    async def once(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        async def locked() -> T:
            async with self.lock(key):
                return await fn()

        return await self.flights.do(key, locked)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """An exclusive lock on key shared by every process using ``lock_dir``."""
        if self._lock_dir is None:
            yield
            return
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        fd = os.open(self._lock_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL_SECONDS)  # another process holds key
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def in_flight(self) -> int:
        return self.flights.in_flight()

    async def close(self) -> None:
        """Nothing to release: locks die with their descriptors."""
