"""test_tiles checks gomirror.sumdb.tiles: every tile vector, and tile authentication."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import pytest

from gomirror.errors import InvalidRequest, SumdbError
from gomirror.sumdb.tiles import (
    Tile,
    TileHashReader,
    hash_from_tile,
    new_tiles,
    parse_tile_path,
    read_tile_data,
    tile_for_index,
    tree_hash_async,
)
from gomirror.sumdb.tlog import ListHashReader, Tree, stored_hash_index, stored_hashes, tree_hash
from support.vectors import group

TLOG = group("tlog")
TT = TLOG["test_tree"]


def _build(n: int) -> list[bytes]:
    hashes: list[bytes] = []
    for i in range(n):
        hashes.extend(stored_hashes(i, f"leaf {i}".encode(), ListHashReader(hashes)))
    return hashes


HASHES = tuple(_build(100))


@pytest.mark.parametrize("case", TLOG["tile_paths"], ids=lambda c: c["path"])
def test_tile_paths(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(InvalidRequest) as exc:
            parse_tile_path(case["path"])
        assert str(exc.value) == case["error"]
        return
    t = case["tile"]
    tile = parse_tile_path(case["path"])
    assert tile == Tile(t["H"], t["L"], t["N"], t["W"])
    assert tile.path() == case["path"]


@pytest.mark.parametrize(
    "bad", ["tile/8/0/000.p/", "tile/8/0/.p/3", "tile/8/0/x/000", "tile/8/+0/000"]
)
def test_more_bad_paths(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_tile_path(bad)


@pytest.mark.parametrize(
    "case", TLOG["tile_for_index"], ids=lambda c: f"{c['height']}/{c['index']}"
)
def test_tile_for_index(case: dict[str, Any]) -> None:
    assert tile_for_index(case["height"], case["index"]).path() == case["path"]


@pytest.mark.parametrize("case", TLOG["new_tiles"], ids=lambda c: f"{c['old']}-{c['new']}")
def test_new_tiles(case: dict[str, Any]) -> None:
    tiles = new_tiles(case["height"], case["old"], case["new"])
    assert [t.path() for t in tiles] == case["paths"]
    assert len(tiles) == case["count"]


def test_tiles_h2_size13_and_hash_from_tile() -> None:
    reader = ListHashReader(HASHES)
    for case in TT["tiles_h2_size13"]:
        tile = parse_tile_path(case["path"])
        data = read_tile_data(tile, reader)
        assert data == base64.b64decode(case["data_b64"])
    # Every stored hash of the 13-record tree is recoverable from the tile that holds it.
    for index in range(stored_hash_index(0, 12) + 1):
        tile = tile_for_index(2, index)
        data = read_tile_data(tile, reader)
        assert hash_from_tile(tile, data, index) == HASHES[index]


class MemoryTiles:
    """A TileReader serving tiles computed from HASHES, with optional tampering."""

    def __init__(self, height: int, tamper: str | None = None) -> None:
        self.height = height
        self.tamper = tamper
        self.read: list[str] = []
        self.saved: list[str] = []

    async def read_tiles(self, tiles: Sequence[Tile]) -> list[bytes]:
        out = []
        for t in tiles:
            self.read.append(t.path())
            data = read_tile_data(t, ListHashReader(HASHES))
            if t.path() == self.tamper:
                data = bytes([data[0] ^ 1]) + data[1:]
            out.append(data)
        return out

    async def save_tiles(self, tiles: Sequence[Tile], data: Sequence[bytes]) -> None:
        self.saved.extend(t.path() for t in tiles)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 64, 65, 99, 100])
def test_tile_hash_reader_reads_authenticated_hashes(size: int) -> None:
    tree = Tree(size, tree_hash(size, ListHashReader(HASHES)))
    tiles = MemoryTiles(2)
    reader = TileHashReader(tree, tiles)
    indexes = [stored_hash_index(0, i) for i in range(size)]
    assert asyncio.run(reader.read_hashes(indexes)) == [HASHES[i] for i in indexes]
    assert tiles.saved == tiles.read
    for n in range(1, size + 1):
        assert asyncio.run(tree_hash_async(n, reader)) == tree_hash(n, ListHashReader(HASHES))


def test_tile_hash_reader_rejects_tampered_tiles() -> None:
    tree = Tree(99, tree_hash(99, ListHashReader(HASHES)))
    indexes = [stored_hash_index(0, 0), stored_hash_index(0, 98)]
    honest = MemoryTiles(2)
    asyncio.run(TileHashReader(tree, honest).read_hashes(indexes))
    assert "tile/2/0/000" in honest.read and "tile/2/0/024.p/3" in honest.read
    assert len(honest.read) > 4
    for path in honest.read:
        tiles = MemoryTiles(2, tamper=path)
        with pytest.raises(SumdbError, match="downloaded inconsistent tile"):
            asyncio.run(TileHashReader(tree, tiles).read_hashes(indexes))
        assert tiles.saved == []


def test_tile_hash_reader_rejects_wrong_tree_and_out_of_range() -> None:
    tree = Tree(10, tree_hash(11, ListHashReader(HASHES)))
    with pytest.raises(SumdbError, match="downloaded inconsistent tile"):
        asyncio.run(TileHashReader(tree, MemoryTiles(8)).read_hashes([0]))
    good = Tree(10, tree_hash(10, ListHashReader(HASHES)))
    with pytest.raises(SumdbError, match="indexes not in tree"):
        asyncio.run(TileHashReader(good, MemoryTiles(8)).read_hashes([stored_hash_index(0, 10)]))
