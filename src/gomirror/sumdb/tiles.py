"""tiles implements the tiled storage of the transparent log (golang.org/x/mod/sumdb/tlog/tile.go).

A ``Tile`` (H, L, N, W) holds W consecutive hashes of level L·H, starting at
index N·2^H; L = -1 names a data tile (record texts). Tile paths are
``tile/H/L/NNN[.p/W]`` with N in base 1000 and ``x`` prefixes on all but the last
element; ``parse_tile_path`` accepts only canonical paths (it re-formats and
compares). ``plan_tiles`` chooses the tiles that authenticate some stored
hashes of a tree, ``roots_match`` and ``child_matches`` are the two checks
(the root tiles fold to the signed tree hash; every other tile hashes to the
value its parent holds). ``TileHashReader`` runs them over one async
``TileReader`` exactly as x/mod's tileHashReader does; ``tileauth`` runs them
route by route.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from gomirror.errors import InvalidRequest, SumdbError
from gomirror.module.paths import go_quote
from gomirror.sumdb.tlog import (
    EMPTY_HASH,
    HASH_SIZE,
    HashReader,
    MapHashReader,
    Tree,
    node_hash,
    prove_tree,
    split_stored_hash_index,
    stored_hash_index,
    tree_hash,
    tree_hash_indexes,
    tree_proof_indexes,
)

PATH_BASE = 1000
_ATOI = re.compile(r"[+-]?[0-9]+")


class BadTilePath(InvalidRequest):
    """A tile path is not the canonical form of any tile."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"malformed tile path {go_quote(path)}")


class InconsistentTile(SumdbError):
    """Downloaded tiles do not hash to the signed tree."""


@dataclass(frozen=True, slots=True)
class Tile:
    """A tile: height H, level L (-1 for data), number N, width W (2**H when full)."""

    H: int
    L: int
    N: int
    W: int

    def path(self) -> str:
        """Return the tile's path, e.g. ``tile/8/0/x001/234.p/5``."""
        n = self.N
        n_str = f"{n % PATH_BASE:03d}"
        while n >= PATH_BASE:
            n //= PATH_BASE
            n_str = f"x{n % PATH_BASE:03d}/{n_str}"
        p_str = "" if self.W == 1 << self.H else f".p/{self.W}"
        level = "data" if self.L == -1 else str(self.L)
        return f"tile/{self.H}/{level}/{n_str}{p_str}"

    @property
    def is_full(self) -> bool:
        """Report whether the tile has its full width 2**H."""
        return self.W == 1 << self.H

    def full(self) -> Tile:
        """Return the full-width tile at the same position."""
        return replace(self, W=1 << self.H)


def _atoi(s: str) -> int | None:
    return int(s) if _ATOI.fullmatch(s) else None


def parse_tile_path(path: str) -> Tile:
    """Parse a canonical tile path; raises BadTilePath (an InvalidRequest)."""
    f = path.split("/")
    if len(f) < 4 or f[0] != "tile":
        raise BadTilePath(path)
    h = _atoi(f[1])
    is_data = f[2] == "data"
    level = 0 if is_data else _atoi(f[2])
    if h is None or level is None or h < 1 or level < 0 or h > 30:
        raise BadTilePath(path)
    w = 1 << h
    if f[-2].endswith(".p"):
        ww = _atoi(f[-1])
        if ww is None or ww <= 0 or ww >= w:
            raise BadTilePath(path)
        w = ww
        f[-2] = f[-2][: -len(".p")]
        f = f[:-1]
    n = 0
    for s in f[3:]:
        nn = _atoi(s.removeprefix("x"))
        if nn is None or nn < 0 or nn >= PATH_BASE:
            raise BadTilePath(path)
        n = n * PATH_BASE + nn
    tile = Tile(h, -1 if is_data else level, n, w)
    if tile.path() != path:
        raise BadTilePath(path)
    return tile


def _tile_for_index(h: int, index: int) -> tuple[Tile, int, int]:
    """Return the smallest tile holding the stored hash index, and its byte span in it."""
    level, n = split_stored_hash_index(index)
    tile_level = level // h
    level -= tile_level * h  # level within the tile
    tile_n = n << level >> h
    n -= tile_n << h >> level  # n within the tile at this level
    tile = Tile(h, tile_level, tile_n, (n + 1) << level)
    return tile, (n << level) * HASH_SIZE, ((n + 1) << level) * HASH_SIZE


def tile_for_index(h: int, index: int) -> Tile:
    """Return the (possibly partial) tile of height h that holds the stored hash index."""
    if h <= 0:
        raise ValueError(f"tile_for_index: invalid height {h}")
    return _tile_for_index(h, index)[0]


def tile_hash(data: bytes) -> bytes:
    """Return the hash of the subtree whose level-0 (in the tile) hashes are data."""
    if len(data) == HASH_SIZE:
        return data
    half = len(data) // 2
    return node_hash(tile_hash(data[:half]), tile_hash(data[half:]))


def hash_from_tile(t: Tile, data: bytes, index: int) -> bytes:
    """Return the stored hash at index, computed from tile t's data."""
    if t.H < 1 or t.H > 30 or t.L < 0 or t.L >= 64 or t.W < 1 or t.W > 1 << t.H:
        raise SumdbError(f"invalid tile {t.path()}")
    if len(data) < t.W * HASH_SIZE:
        raise SumdbError(f"data len {len(data)} too short for tile {t.path()}")
    t1, start, end = _tile_for_index(t.H, index)
    if t.L != t1.L or t.N != t1.N or t.W < t1.W:
        raise SumdbError(f"index {index} is in {t1.path()} not {t.path()}")
    return tile_hash(data[start:end])


def new_tiles(h: int, old_size: int, new_size: int) -> list[Tile]:
    """Return the tiles that change when a tree grows from old_size to new_size records."""
    if h <= 0:
        raise ValueError(f"new_tiles: invalid height {h}")
    tiles: list[Tile] = []
    level = 0
    while new_size >> (h * level) > 0:
        old_n = old_size >> (h * level)
        new_n = new_size >> (h * level)
        if old_n != new_n:
            for n in range(old_n >> h, new_n >> h):
                tiles.append(Tile(h, level, n, 1 << h))
            n = new_n >> h
            w = new_n - (n << h)
            if w > 0:
                tiles.append(Tile(h, level, n, w))
        level += 1
    return tiles


def read_tile_data(t: Tile, reader: HashReader) -> bytes:
    """Return the bytes of hash tile t, reading its hashes from reader."""
    start = t.N << t.H
    indexes = [stored_hash_index(t.H * t.L, start + i) for i in range(t.W)]
    hashes = reader.read_hashes(indexes)
    if len(hashes) != len(indexes):
        raise SumdbError(f"tlog: read_hashes({len(indexes)} indexes) = {len(hashes)} hashes")
    return b"".join(hashes)


def tile_parent(t: Tile, k: int, n: int) -> Tile | None:
    """Return the tile k levels above t in a tree of n records, or None if it is empty."""
    level = t.L + k
    number = t.N >> (k * t.H)
    width = 1 << t.H
    limit = n >> (level * t.H)
    if (number << t.H) + width >= limit:
        if number << t.H >= limit:
            return None
        width = limit - (number << t.H)
    return Tile(t.H, level, number, width)


class TileReader(Protocol):
    """Fetches tiles for a TileHashReader and saves them once authenticated."""

    @property
    def height(self) -> int: ...

    async def read_tiles(self, tiles: Sequence[Tile]) -> list[bytes]: ...

    async def save_tiles(self, tiles: Sequence[Tile], data: Sequence[bytes]) -> None: ...


@dataclass(frozen=True, slots=True)
class TilePlan:
    """The tiles needed to read some stored hashes of a tree, in authentication order.

    The first ``roots`` tiles hold the tree's subtree roots (``stx``; the tile
    of ``stx[i]`` is ``tiles[stx_order[i]]``): folded together they must give
    the signed tree hash. Every later tile is full and comes after its parent,
    which holds its hash. ``index_order[i]`` is the tile of the i-th index asked.
    """

    tiles: list[Tile]
    stx: list[int]
    stx_order: list[int]
    index_order: list[int]

    @property
    def roots(self) -> int:
        return max(self.stx_order) + 1 if self.stx_order else 0


def plan_tiles(h: int, n: int, indexes: Sequence[int]) -> TilePlan:
    """Choose the tiles of tree size n (height h) that authenticate the stored hashes at indexes."""
    order: dict[Tile, int] = {}
    tiles: list[Tile] = []
    stx = tree_hash_indexes(n)
    stx_order: list[int] = []
    for x in stx:
        tile = tile_parent(_tile_for_index(h, x)[0], 0, n)
        assert tile is not None
        if tile not in order:
            order[tile] = len(tiles)
            tiles.append(tile)
        stx_order.append(order[tile])
    index_order: list[int] = []
    limit = stored_hash_index(0, n)
    for x in indexes:
        if x < 0 or x >= limit:
            raise SumdbError("indexes not in tree")
        base = _tile_for_index(h, x)[0]
        k = 0
        while True:
            p = tile_parent(base, k, n)
            if p is not None and p in order:
                break
            k += 1
        pos = order[p]  # the tile already planned at level k above
        for kk in range(k - 1, -1, -1):
            p = tile_parent(base, kk, n)
            if p is None or not p.is_full:
                raise SumdbError(f"bad math in tile hash reader: {n} {x} {p}")
            order[p] = pos = len(tiles)
            tiles.append(p)
        index_order.append(pos)
    return TilePlan(tiles, stx, stx_order, index_order)


def roots_match(tree: Tree, plan: TilePlan, data: Sequence[bytes]) -> bool:
    """Report whether the root tiles (``data[:plan.roots]``) fold to the signed tree hash."""
    for tile, d in zip(plan.tiles[: plan.roots], data, strict=False):
        if len(d) != tile.W * HASH_SIZE:
            return False
    th = EMPTY_HASH
    for i in range(len(plan.stx) - 1, -1, -1):
        j = plan.stx_order[i]
        hh = hash_from_tile(plan.tiles[j], data[j], plan.stx[i])
        th = hh if i == len(plan.stx) - 1 else node_hash(hh, th)
    return th == tree.hash


def expected_child_hash(n: int, tile: Tile, parent_data: bytes) -> bytes:
    """Return the hash of full tile ``tile`` as its parent tile (of tree size n) records it."""
    parent = tile_parent(tile, 1, n)
    if parent is None:
        raise SumdbError(f"bad math in tile hash reader: lost parent of {tile.path()}")
    return hash_from_tile(parent, parent_data, stored_hash_index(parent.L * parent.H, tile.N))


def child_matches(tile: Tile, data: bytes, expect: bytes) -> bool:
    """Report whether ``data`` is the full tile whose hash is ``expect``."""
    return len(data) == tile.W * HASH_SIZE and tile_hash(data) == expect


class AsyncHashReader(Protocol):
    """Returns authenticated stored hashes of one tree, in order."""

    async def read_hashes(self, indexes: Sequence[int]) -> list[bytes]: ...


class TileHashReader:
    """Reads stored hashes of the tree ``tree`` through authenticated tiles (one tile source)."""

    def __init__(self, tree: Tree, reader: TileReader) -> None:
        self.tree = tree
        self._reader = reader

    async def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Return the stored hashes at indexes, after authenticating every tile used."""
        plan = plan_tiles(self._reader.height, self.tree.n, indexes)
        tiles = plan.tiles
        data = await self._reader.read_tiles(tiles)
        if len(data) != len(tiles):
            raise SumdbError("tile reader returned a bad result list")
        for tile, d in zip(tiles, data, strict=True):
            if len(d) != tile.W * HASH_SIZE:
                raise InconsistentTile(
                    f"tile {tile.path()} has {len(d)} bytes, want {tile.W * HASH_SIZE}"
                )
        # The subtree roots, folded right to left, must give the signed tree hash.
        if not roots_match(self.tree, plan, data):
            raise InconsistentTile("downloaded inconsistent tile")
        # Every other tile is a full child whose hash its (already checked) parent holds.
        order = {t: i for i, t in enumerate(tiles)}
        for i in range(plan.roots, len(tiles)):
            tile = tiles[i]
            parent = tile_parent(tile, 1, self.tree.n)
            if parent is None or parent not in order:
                raise SumdbError(f"bad math in tile hash reader: lost parent of {tile.path()}")
            expect = expected_child_hash(self.tree.n, tile, data[order[parent]])
            if not child_matches(tile, data[i], expect):
                raise InconsistentTile("downloaded inconsistent tile")
        await self._reader.save_tiles(tiles, data)
        return [
            hash_from_tile(tiles[j], data[j], x)
            for x, j in zip(indexes, plan.index_order, strict=True)
        ]


async def tree_hash_async(n: int, reader: AsyncHashReader) -> bytes:
    """Return the hash of the first n records, read through authenticated tiles."""
    if n == 0:
        return EMPTY_HASH
    indexes = tree_hash_indexes(n)
    hashes = await reader.read_hashes(indexes)
    return tree_hash(n, MapHashReader(dict(zip(indexes, hashes, strict=True))))


async def prove_tree_async(t: int, n: int, reader: AsyncHashReader) -> list[bytes]:
    """Return the consistency proof between sizes n and t, read through tiles."""
    indexes = tree_proof_indexes(t, n)
    hashes = await reader.read_hashes(indexes) if indexes else []
    return prove_tree(t, n, MapHashReader(dict(zip(indexes, hashes, strict=True))))
