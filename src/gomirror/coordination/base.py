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
