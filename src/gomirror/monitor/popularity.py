"""monitor.popularity counts which modules this gomirror is asked for most, in bounded memory.

``Popularity(capacity, halve_every)``: ``record(module)`` is called on every
module request and costs a dict update (amortised O(1): a prune of O(n log K)
runs at most once per ``capacity`` new modules); ``top(k)`` returns the ``k``
most requested modules, most requested first, ties by name.

Bounds and ageing: at most ``2 * capacity`` modules are tracked; when that
is exceeded only the ``capacity`` largest counts are kept (among equal counts,
the most recently added), so a new module survives a prune once it has been
asked for more often than the long tail. Every ``halve_every`` records all
counts are halved (ones drop out), so what was popular last month fades and
the watch list follows today's traffic. The counts are approximate by design.
Not thread-safe; call it from the event loop.

``watch_set(fixed, top, k, private)`` is the monitor's watch list: the
configured modules, then the ``k`` most requested, never a private one.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence

from gomirror.module.paths import match_prefix_patterns


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
        # nsmallest is stable: walking newest first keeps the newest among equal counts.
        newest_first = reversed(self._counts.items())
        keep = heapq.nsmallest(self._capacity, newest_first, key=lambda kv: -kv[1])
        self._counts = dict(reversed(keep))


def watch_set(
    fixed: Iterable[str],
    top: Callable[[int], Sequence[str]] | None = None,
    k: int = 50,
    private: str = "",
) -> Callable[[], list[str]]:
    """The monitor's ``watch``: config modules first, then the ``k`` most requested.

    Modules matching ``private`` (GOPRIVATE syntax) are left out: their names must
    never reach a public mirror.
    """
    fixed = tuple(fixed)

    def watch() -> list[str]:
        mods = list(fixed) + (list(top(k)) if top is not None and k > 0 else [])
        return [m for m in dict.fromkeys(mods) if not match_prefix_patterns(private, m)]

    return watch
