"""coordination.base defines the Coordinator protocol: one fetch per key across every process and instance.

``once(key, fn)`` runs ``fn`` for concurrent callers of one key so that, across
all processes (and, with a shared backend, all instances) that share this
coordinator, at most one runs it at a time; concurrent callers in one process
share one run and its result or exception. ``fn`` must re-check storage first:
when it gets the lock, another process may already have stored the object.
The run is shielded: a caller that goes away does not cancel it for the others.

``LocalCoordinator`` (in-process single-flight plus ``flock`` on files in a
local directory) is the default; a Redis implementation serves several
instances. A holder that crashes never blocks the others: ``flock`` is
released with the process, a Redis lock expires.

``SharedState`` is the second protocol here: small values with a TTL that
every process sees alike (``MemoryState`` in one process, ``RedisState``
across instances).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Coordinator(Protocol):
    """Deduplicates work by key across processes (see the module docstring)."""

    async def once(self, key: str, fn: Callable[[], Awaitable[T]]) -> T: ...

    def in_flight(self) -> int:
        """How many keys this process is working on now."""
        ...

    async def close(self) -> None: ...


class SharedState(Protocol):
    """Small, short-lived values every process (with Redis, every instance) sees alike.

    For negative answers, mutable-answer freshness and mirror health records:
    a value is a few bytes to a few KiB (``MAX_STATE_BYTES`` at most) and is
    gone after ``ttl`` seconds. It is a hint, never the only copy of anything:
    a lost value (expiry, eviction, a Redis restart, Redis unreachable) costs
    one more upstream request, never a wrong answer.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...


MAX_STATE_BYTES = 64 * 1024
