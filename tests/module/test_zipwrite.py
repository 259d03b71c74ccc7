"""test_zipwrite covers the module-zip writer that create_zip uses in place of zipfile's.

Every zip written here is read back three ways: by :mod:`zipfile` (CRCs
checked with ``testzip``), by gomirror's own untrusting reader through
``check_zip`` (which refuses any local header that disagrees with the central
directory) and by the go command where a test says so elsewhere
(tests/upstream/test_direct_gocompare.py builds every direct-mode zip with it).
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest

from gomirror.module import modzip
from gomirror.module.zipwrite import ZipWriter

M, V = "example.com/zw", "v1.0.0"


def _random_text(rng: random.Random, n: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"\xc3\xa9t\xc3\xa9", b"\n"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def _write(tmp: Path, files: list[modzip.ZipFile]) -> tuple[Path, modzip.CreateResult]:
    path = tmp / "m.zip"
    with path.open("wb") as out:
        result = modzip.create_zip(out, M, V, files)
    return path, result


def _read_back(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.date_time == (1980, 0, 0, 0, 0, 0)
            assert info.extra == b""
            assert info.external_attr >> 16 == 0o644
            assert not info.filename.endswith("/")
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_small_and_streamed_entries_round_trip_with_matching_headers(tmp_path: Path) -> None:
    rng = random.Random(1)
    big = _random_text(rng, (1 << 20) + 12345)  # above the read-whole limit: streamed
    disk = tmp_path / "big.txt"
    disk.write_bytes(big)
    files = [
        modzip.ZipFile.from_bytes("go.mod", f"module {M}\n".encode()),
        modzip.ZipFile.from_bytes("empty.txt", b""),
        modzip.ZipFile.from_bytes("café/é.go", "package é\n".encode()),
        modzip.ZipFile.from_fs("big.txt", disk),
    ]
    path, result = _write(tmp_path, files)
    back = _read_back(path)
    assert back == {
        f"{M}@{V}/go.mod": f"module {M}\n".encode(),
        f"{M}@{V}/empty.txt": b"",
        f"{M}@{V}/café/é.go": "package é\n".encode(),
        f"{M}@{V}/big.txt": big,
    }
    with zipfile.ZipFile(path) as zf:
        flags = {i.filename: i.flag_bits for i in zf.infolist()}
    assert flags[f"{M}@{V}/café/é.go"] & 0x800  # UTF-8 name flagged
    assert not flags[f"{M}@{V}/go.mod"] & 0x800
    checked = modzip.check_zip(path, M, V)  # local headers agree with the directory
    assert checked.h1 == result.h1
    assert checked.files == result.files == 4


def test_threaded_compression_keeps_order_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module large enough for several packing threads gives the bytes one thread gives."""
    rng = random.Random(2)
    files = [modzip.ZipFile.from_bytes("go.mod", f"module {M}\n".encode())]
    files += [
        modzip.ZipFile.from_bytes(f"p{i % 7}/f{i:04d}.go", _random_text(rng, rng.randint(0, 9000)))
        for i in range(900)
    ]
    assert sum(f.size for f in files) > modzip._PARALLEL_FROM
    monkeypatch.setattr(os, "cpu_count", lambda: 4)  # threads even on a 1-core runner
    threaded, result = _write(tmp_path, files)
    threaded_bytes = threaded.read_bytes()
    monkeypatch.setattr(modzip, "_PACKERS", 1)
    serial, serial_result = _write(tmp_path, files)
    assert serial.read_bytes() == threaded_bytes
    assert serial_result.h1 == result.h1 == modzip.check_zip(serial, M, V).h1
    names = list(_read_back(serial))
    assert names == [f"{M}@{V}/{f.path}" for f in files]


def test_an_input_larger_than_declared_is_refused(tmp_path: Path) -> None:
    disk = tmp_path / "grows.txt"
    disk.write_bytes(b"x" * ((1 << 20) + 10))
    liar = modzip.ZipFile("grows.txt", 100, lambda: disk.open("rb"))
    streamed_liar = modzip.ZipFile("grows2.txt", (1 << 20) + 1, lambda: disk.open("rb"))
    for f in (liar, streamed_liar):
        with pytest.raises(modzip.ZipError, match="larger than declared size"):
            modzip.create_zip(io.BytesIO(), M, V, [f])


def test_sixty_five_thousand_entries_get_zip64_end_records() -> None:
    buf = io.BytesIO()
    zw = ZipWriter(buf)
    count = 70_000
    for i in range(count):
        zw.add(f"{M}@{V}/d{i // 1000}/f{i}", b"%d" % i)
    zw.close()
    data = buf.getvalue()
    assert b"PK\x06\x06" in data[-200:] and b"PK\x06\x07" in data[-200:]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert zf.read(infos[-1]) == b"%d" % (count - 1)
