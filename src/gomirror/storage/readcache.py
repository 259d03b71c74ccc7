"""storage.readcache keeps small immutable objects in process memory, bounded by bytes, in LRU order.

A backend with slow reads (an object store: one round trip per ``get``) puts
what it read here and asks here first, so warm ``.info``/``.mod`` hits cost no
request. Only keys for which ``is_immutable`` is true may be kept: a module
version's ``.mod`` and canonical ``.info`` and the checksum database's full
tiles never change once written, so a copy can never be stale for them. Lists,
``@latest``, queries, sidecars and gomirror's own state change and are never
kept. Objects larger than ``max_object`` are not kept either (zips are
streamed, not held). The owner must ``discard`` a key it writes or deletes;
another process deleting an immutable object (``cache gc``) may leave a copy
here until it is evicted, which serves the same bytes that were verified.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_MAX_OBJECT = 64 << 10


def is_immutable(key: str) -> bool:
    """True for keys whose content never changes once written (see the module docstring)."""
    if key.startswith("_gomirror/"):
        return False
    if "/@v/" in key:
        return key.endswith((".mod", ".info"))
    # sumdb/<name>/tile/<H>/<L>/<N>: a full tile; partial ones (".p/<W>") grow into full ones.
    return key.startswith("sumdb/") and "/tile/" in key and ".p/" not in key


class ReadCache:
    """An LRU of key → bytes holding at most ``max_bytes`` in total (0: keeps nothing)."""

    def __init__(self, max_bytes: int, max_object: int = DEFAULT_MAX_OBJECT) -> None:
        self.max_bytes = max_bytes
        self.max_object = min(max_object, max_bytes)
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        """Keep data for key if the key is immutable and the object small; evict the oldest."""
        if self.max_bytes <= 0 or len(data) > self.max_object or not is_immutable(key):
            return
        self.discard(key)
        self._items[key] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)

    def discard(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
