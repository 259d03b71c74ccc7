"""coordination.state is the in-process SharedState: a bounded dict of values that expire.

``MemoryState`` is what one process uses without Redis, and what
``RedisState`` falls back to while Redis is unreachable. It is shared by the
tasks of one process only (``--workers N`` gives each worker its own). At most
``max_entries`` values are kept; when full, expired values go first, then the
oldest. The clock is injectable so expiry is tested without waiting.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gomirror.coordination.base import MAX_STATE_BYTES


def check_value(key: str, value: bytes, ttl: float) -> None:
    """The SharedState rules for one set: a non-empty key, small bytes, a positive TTL."""
    if not key:
        raise ValueError("shared state key is empty")
    if not isinstance(value, bytes):
        raise TypeError("shared state values are bytes")
    if len(value) > MAX_STATE_BYTES:
        raise ValueError(f"shared state value of {len(value)} bytes is over {MAX_STATE_BYTES}")
    if not ttl > 0:
        raise ValueError("shared state ttl must be positive")


class MemoryState:
    """A SharedState for one process (see the module docstring)."""

    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._clock = clock
        # key -> (expires, value), oldest set first
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._values[key]
            return None
        return item[1]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        check_value(key, value, ttl)
        self._values.pop(key, None)
        if len(self._values) >= self._max:
            self._evict()
        self._values[key] = (self._clock() + ttl, value)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    def __len__(self) -> int:
        return len(self._values)

    def _evict(self) -> None:
        now = self._clock()
        for k in [k for k, (expires, _) in self._values.items() if expires <= now]:
            del self._values[k]
        while len(self._values) >= self._max:
            self._values.popitem(last=False)  # insertion order: the oldest set goes first
