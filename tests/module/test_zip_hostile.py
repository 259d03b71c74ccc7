"""Hostile and malformed module zips: each must end in ZipError, quickly and in bounded memory."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from modtestkit import RawEntry, build_zip, write_zip

from gomirror.errors import InvalidContent
from gomirror.module import modzip
from gomirror.module.modzip import ZipError

MOD, VER = "example.com/m", "v1.0.0"
P = f"{MOD}@{VER}/"
GOMOD = b"module example.com/m\n"


def _check(tmp_path: Path, entries: list[RawEntry]) -> modzip.CheckedZip:
    return modzip.check_zip(write_zip(tmp_path, entries), MOD, VER)


def test_good_zip_reports_facts(tmp_path: Path) -> None:
    checked = _check(tmp_path, [RawEntry(P + "go.mod", GOMOD), RawEntry(P + "a.go", b"package a")])
    assert checked.gomod == GOMOD
    assert checked.files == 2
    assert checked.h1.startswith("h1:")
    assert _check(tmp_path, [RawEntry(P + "a.go", b"package a")]).gomod is None


def test_zip_error_is_invalid_content() -> None:
    assert issubclass(ZipError, InvalidContent)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (P + "../x", 'malformed file path "../x": invalid path element ".."'),
        (P + "a/../../x", "file path is not clean"),
        ("../x", "path does not have prefix"),
        ("/etc/passwd", "path does not have prefix"),
        (P + "/etc/passwd", 'malformed file path "/etc/passwd": empty path element'),
        (P + "a\\..\\x", "invalid char '\\\\'"),
        (P + "a\x00b", "invalid char '\\x00'"),
        (P + "C:x", "invalid char ':'"),
        (P + "com1.txt", '"com1" disallowed as path element component on Windows'),
        (P + "sub/go.mod", "go.mod file not in module root directory"),
    ],
)
def test_bad_names(tmp_path: Path, name: str, reason: str) -> None:
    with pytest.raises(ZipError) as e:
        _check(tmp_path, [RawEntry(name, b"x")])
    assert reason in str(e.value)


def test_duplicate_entry(tmp_path: Path) -> None:
    with pytest.raises(ZipError, match=r'multiple entries for file "a\.go"'):
        _check(tmp_path, [RawEntry(P + "a.go", b"1"), RawEntry(P + "a.go", b"2")])


def test_unicode_case_fold_collision(tmp_path: Path) -> None:
    with pytest.raises(ZipError, match="case-insensitive file name collision"):
        _check(tmp_path, [RawEntry(P + "k.go", b""), RawEntry(P + "\u212a.go", b"")])


def test_non_utf8_name_without_flag(tmp_path: Path) -> None:
    entry = RawEntry(P.encode() + b"\xff.go", b"", flags=0)
    with pytest.raises(ZipError, match=r'malformed file path "\\xff.go": invalid UTF-8'):
        _check(tmp_path, [entry])


def test_utf8_name_without_flag_is_read_as_utf8(tmp_path: Path) -> None:
    entry = RawEntry((P + "é.go").encode(), b"package x", flags=0)
    flagged = RawEntry(P + "é.go", b"package x")
    assert _check(tmp_path, [entry]).h1 == _check(tmp_path, [flagged]).h1


def test_zip_bomb_declared_small(tmp_path: Path) -> None:
    bomb = RawEntry(P + "bomb.go", b"\0" * (64 << 20), declared_size=10, crc=0)
    with pytest.raises(ZipError, match="larger than declared size"):
        _check(tmp_path, [bomb])


def test_zip_bomb_declared_huge(tmp_path: Path) -> None:
    entry = RawEntry(P + "bomb.go", b"\0" * 1000, declared_size=0xFFFFFFF0)
    with pytest.raises(ZipError, match="total uncompressed size of module contents too large"):
        _check(tmp_path, [entry])


def test_directory_entry_content_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modzip, "MAX_ZIP_FILE", 1000)
    entry = RawEntry(P + "dir/", b"\0" * 5000)
    with pytest.raises(ZipError, match="too large"):
        _check(tmp_path, [entry])


def test_declared_size_larger_than_data(tmp_path: Path) -> None:
    with pytest.raises(ZipError, match="shorter than declared size"):
        _check(tmp_path, [RawEntry(P + "a.go", b"abc", declared_size=10)])


def test_bad_crc(tmp_path: Path) -> None:
    with pytest.raises(ZipError, match="checksum error"):
        _check(tmp_path, [RawEntry(P + "a.go", b"abc", crc=12345)])


def test_stored_size_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ZipError):
        _check(tmp_path, [RawEntry(P + "a.go", b"abcdef", method=0, declared_size=3)])


def test_unsupported_method(tmp_path: Path) -> None:
    with pytest.raises(ZipError, match="unsupported compression algorithm"):
        _check(tmp_path, [RawEntry(P + "a.go", b"abc", method=12)])


def test_encrypted_entry(tmp_path: Path) -> None:
    with pytest.raises(ZipError, match="encrypted"):
        _check(tmp_path, [RawEntry(P + "a.go", b"abc", flags=0x801)])


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"hello world" * 100)]))
    start = data.index(b"a.go") + 4
    data[start : start + 8] = b"\xff" * 8
    path = tmp_path / "c.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ZipError):
        modzip.check_zip(path, MOD, VER)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x05\x06" + b"\0" * 10])
def test_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(content)
    with pytest.raises(ZipError, match="not a valid zip file"):
        modzip.check_zip(path, MOD, VER)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated(tmp_path: Path, keep: float) -> None:
    data = build_zip([RawEntry(P + "go.mod", GOMOD), RawEntry(P + "a.go", b"x" * 5000)])
    path = tmp_path / "t.zip"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ZipError):
        modzip.check_zip(path, MOD, VER)


def test_local_header_points_outside_file(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"abc")]))
    cd = data.index(b"PK\x01\x02")
    data[cd + 42 : cd + 46] = (10**6).to_bytes(4, "little")
    path = tmp_path / "o.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ZipError):
        modzip.check_zip(path, MOD, VER)


def test_random_corruption_only_raises_zip_error(tmp_path: Path) -> None:
    base = build_zip(
        [
            RawEntry(P + "go.mod", GOMOD),
            RawEntry(P + "a.go", bytes(range(256)) * 20),
            RawEntry(P + "b/c.go", b"package c\n" * 50, method=0),
        ]
    )
    rng = random.Random(1234)
    path = tmp_path / "f.zip"
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            modzip.check_zip(path, MOD, VER)
        except ZipError:
            pass


def test_deflate_stream_ending_early_is_detected(tmp_path: Path) -> None:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    unterminated = c.compress(b"x" * 1000) + c.flush(zlib.Z_SYNC_FLUSH)  # no final block
    entry = RawEntry(P + "a.go", b"x" * 1000, raw_payload=unterminated)
    with pytest.raises(ZipError, match="truncated"):
        _check(tmp_path, [entry])
