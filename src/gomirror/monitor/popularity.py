"""monitor.popularity counts which modules this gomirror is asked for most, in bounded memory.

``Popularity(capacity, halve_every)``: ``record(module)`` is called on every
module request and costs a dict update (amortised O(1): a prune of O(n log K)
runs at most once per ``capacity`` new modules); ``top(k)`` returns the ``k``
most requested modules, most requested first, ties by name.

Bounds and ageing: at most ``2 * capacity`` modules are tracked; when that
is exceeded, counts are halved (modules asked for once drop out) and, if that
is not enough, only the ``capacity`` largest are kept. Every ``halve_every``
records all counts are halved, so what was popular last month fades and the
watch list follows today's traffic. The counts are approximate by design: a
module needs a steady share of requests to stay on top, not one burst.
Not thread-safe; call it from the event loop.
"""

from __future__ import annotations

import heapq


class Popularity:
    """Approximate request counts per module (see the module docstring)."""

    def __init__(self, capacity: int = 1000, halve_every: int = 100_000) -> None:
        if capacity < 1 or halve_every < 1:
            raise ValueError("capacity and halve_every must be positive")
        self._capacity = capacity
        self._halve_every = halve_every
        self._counts: dict[str, int] = {}
        self._since_halving = 0

    def record(self, module: str) -> None:
        """Count one request for module."""
        counts = self._counts
        counts[module] = counts.get(module, 0) + 1
        self._since_halving += 1
        if self._since_halving >= self._halve_every:
            self._halve()
        if len(counts) > 2 * self._capacity:
            self._prune()

    def top(self, k: int) -> list[str]:
        """The k most requested modules, most requested first (ties by name)."""
        if k <= 0:
            return []
        best = heapq.nsmallest(k, self._counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [m for m, _ in best]

    def count(self, module: str) -> int:
        """The (aged) count for module; 0 when it is not tracked."""
        return self._counts.get(module, 0)

    def __len__(self) -> int:
        return len(self._counts)

    def _halve(self) -> None:
        self._since_halving = 0
        self._counts = {m: c >> 1 for m, c in self._counts.items() if c > 1}

    def _prune(self) -> None:
        self._halve()
        if len(self._counts) > self._capacity:
            keep = heapq.nsmallest(
                self._capacity, self._counts.items(), key=lambda kv: (-kv[1], kv[0])
            )
            self._counts = dict(keep)
