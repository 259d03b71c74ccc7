"""coordination.singleflight provides single-flight: one fetch per key, however many callers.

``SingleFlight.do(key, fn)`` runs ``fn`` once for concurrent callers with the
same key; all of them get its result or its exception. The flight is shielded:
one impatient client disconnecting does not cancel the fetch the others wait on.
This is the in-process implementation; several processes sharing one cache add
a cross-process lock around it (``LocalCoordinator``; writes are atomic either way,
so a duplicate fetch across processes wastes bandwidth but never corrupts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SingleFlight:
    """Deduplicates concurrent work by key (see the module docstring)."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps weak ones
        self.shared = 0  # callers that joined an existing flight, for metrics and tests

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        fut = self._flights.get(key)
        if fut is not None:
            self.shared += 1
            result: T = await asyncio.shield(fut)
            return result
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._flights[key] = fut
        task = loop.create_task(self._run(key, fn, fut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(fut)

    async def _run(
        self, key: str, fn: Callable[[], Awaitable[T]], fut: asyncio.Future[Any]
    ) -> None:
        try:
            value = await fn()
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e)
            # Mark retrieved so asyncio does not warn when nobody awaited it.
            fut.exception()
        else:
            if not fut.done():
                fut.set_result(value)
        finally:
            self._flights.pop(key, None)

    def in_flight(self) -> int:
        return len(self._flights)
