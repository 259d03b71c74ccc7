"""upstream.git_slots shares the git process slots fairly between repositories.

Contract: :class:`FairSlots` hands out at most ``total`` slots at once; every
caller names the repository (``key``) it works for. Waiters queue per key, and
a freed slot goes to the next key in round-robin order, so a repository with
many queued commands cannot push another repository's single command to the
back. One key never holds more than ``total - 1`` slots (when ``total > 1``):
however long one repository's commands run (a huge clone, archives of a big
monorepo), there is always a slot another repository can get without waiting
for them. A waiter that is cancelled leaves the queue; a slot granted to a
caller that was cancelled at the same moment is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class FairSlots:
    """A counting semaphore with per-key queues, round-robin grants and a per-key cap."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.per_key = max(1, self.total - 1)
        self._busy = 0
        self._held: dict[str, int] = {}
        # Keys in round-robin order; a key moves to the back when it is served.
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    @property
    def busy(self) -> int:
        """Slots held right now."""
        return self._busy

    def held(self, key: str) -> int:
        """Slots key holds right now."""
        return self._held.get(key, 0)

    def _free_for(self, key: str) -> bool:
        return self._busy < self.total and self._held.get(key, 0) < self.per_key

    def _take(self, key: str) -> None:
        self._busy += 1
        self._held[key] = self._held.get(key, 0) + 1

    def _release(self, key: str) -> None:
        self._busy -= 1
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]
        self._dispatch()

    def _dispatch(self) -> None:
        progress = True
        while progress and self._busy < self.total:
            progress = False
            for key in list(self._queues):
                queue = self._queues[key]
                while queue and queue[0].done():  # cancelled while waiting
                    queue.popleft()
                if not queue:
                    del self._queues[key]
                    continue
                if not self._free_for(key):
                    continue
                self._take(key)
                queue.popleft().set_result(None)
                # Round robin: the served key goes behind every other waiting key.
                del self._queues[key]
                if queue:
                    self._queues[key] = queue
                progress = True
                break

    async def _acquire(self, key: str) -> None:
        if key not in self._queues and self._free_for(key):
            self._take(key)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(key)  # granted just as we were cancelled: give it back
            else:
                fut.cancel()
                self._dispatch()
            raise

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one slot for key for the duration of the block."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)
