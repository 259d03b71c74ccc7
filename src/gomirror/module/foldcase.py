"""foldcase maps strings to case-fold keys by Unicode simple case folding, like x/mod's strToFold.

Two names collide on a case-insensitive file system when their keys are equal,
which is exactly when Go's ``strings.EqualFold`` says they are equal. Each
character maps to the smallest member of its simple-case-folding orbit, with
ASCII ``A``-``Z`` then lowered; so ``K``, ``k`` and the Kelvin sign ``K`` all
become ``k``, while ``ß`` stays ``ß`` (full folding to ``ss`` is not used).

Python has no simple-folding table, so the orbits are derived once, lazily,
from the single-character results of ``str.lower``/``str.upper`` (the simple
mappings; multi-character special casings are ignored, except that
``İ`` lowercases simply to ``i`` as in Unicode's UnicodeData).
"""

from __future__ import annotations

import functools

__all__ = ["equal_fold", "str_to_fold"]

# Every cased character lives below U+1F000 (the last block with case is Adlam, U+1E900).
_CASED_LIMIT = 0x1F000
_SIMPLE_OVERRIDES = {"\u0130": "i"}  # LATIN CAPITAL LETTER I WITH DOT ABOVE


def _simple_partners(c: str) -> list[str]:
    out: list[str] = []
    for mapped in (_SIMPLE_OVERRIDES.get(c, c.lower()), c.upper(), c.title()):
        if len(mapped) == 1 and mapped != c:
            out.append(mapped)
    return out


@functools.cache
def _fold_table() -> dict[str, str]:
    """Map every cased character to the smallest character of its orbit."""
    parent: dict[str, str] = {}

    def find(c: str) -> str:
        root = c
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(c, c) != root:
            parent[c], c = root, parent[c]
        return root

    for cp in range(_CASED_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        for other in _simple_partners(c):
            a, b = find(c), find(other)
            if a != b:
                lo, hi = (a, b) if a < b else (b, a)
                parent[hi] = lo
    return {c: find(c) for c in list(parent)}


def _fold_char(c: str) -> str:
    if c.isascii():
        return c.lower()
    r = _fold_table().get(c, c)
    if "A" <= r <= "Z":
        r = r.lower()
    return r


def str_to_fold(s: str) -> str:
    """Return the case-fold key of ``s``; equal keys mean the names collide."""
    if s.isascii():
        return s.lower()
    return "".join(_fold_char(c) for c in s)


def equal_fold(a: str, b: str) -> bool:
    """Report whether ``a`` and ``b`` are equal under simple folding (``strings.EqualFold``)."""
    return str_to_fold(a) == str_to_fold(b)
