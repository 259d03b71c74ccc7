"""Hostile and malformed module zips: each must end in ZipError, quickly and in bounded memory."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- local headers
# The central directory is what gets checked and hashed; a local header or data
# descriptor that tells another story (names, sizes, method, flags) or entries that
# overlap would let another reader see other bytes. Offsets below are the zip spec's.

_L_FLAGS, _L_METHOD, _L_CRC, _L_CSIZE, _L_SIZE, _L_NAME = 6, 8, 14, 18, 22, 30
_C_FLAGS, _C_CSIZE, _C_SIZE = 8, 20, 24


def _put(data: bytearray, at: int, value: int, width: int = 4) -> None:
    data[at : at + width] = value.to_bytes(width, "little")


def _central(data: bytes | bytearray, n: int = 0) -> int:
    at = -1
    for _ in range(n + 1):
        at = data.index(b"PK\x01\x02", at + 1)
    return at


def _check_bytes(tmp_path: Path, data: bytes | bytearray) -> modzip.CheckedZip:
    path = tmp_path / "l.zip"
    path.write_bytes(bytes(data))
    return modzip.check_zip(path, MOD, VER)


def _descriptor_zip(files: dict[str, bytes], signature: bool = True, wide: bool = False) -> bytes:
    """A zip whose entries announce data descriptors (as Go's archive/zip writes them)."""
    out, central = bytearray(), bytearray()
    for name, content in files.items():
        raw = name.encode()
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(content) + c.flush()
        crc, offset = zlib.crc32(content), len(out)
        out += b"PK\x03\x04" + bytes(26)
        _put(out, offset + 4, 20, 2)
        _put(out, offset + _L_FLAGS, 0x8, 2)
        _put(out, offset + _L_METHOD, 8, 2)
        _put(out, offset + 26, len(raw), 2)
        out += raw + payload
        out += b"PK\x07\x08" if signature else b""
        sizes = "<2Q" if wide else "<2L"
        out += crc.to_bytes(4, "little") + struct.pack(sizes, len(payload), len(content))
        entry = bytearray(b"PK\x01\x02" + bytes(42))
        _put(entry, 4, 20, 2)
        _put(entry, 6, 20, 2)
        _put(entry, _C_FLAGS, 0x8, 2)
        _put(entry, 10, 8, 2)
        _put(entry, 16, crc)
        _put(entry, _C_CSIZE, len(payload))
        _put(entry, _C_SIZE, len(content))
        _put(entry, 28, len(raw), 2)
        _put(entry, 42, offset)
        central += entry + raw
    cd = len(out)
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(files), len(files), len(central), cd, 0)
    return bytes(out)


FILES = {P + "go.mod": GOMOD, P + "a.go": b"package a\n" * 100}


@pytest.mark.parametrize(("signature", "wide"), [(True, False), (False, False), (True, True)])
def test_honest_data_descriptors_are_accepted(tmp_path: Path, signature: bool, wide: bool) -> None:
    checked = _check_bytes(tmp_path, _descriptor_zip(FILES, signature, wide))
    assert checked.files == 2 and checked.gomod == GOMOD


def test_a_zip_written_to_a_stream_is_accepted(tmp_path: Path) -> None:
    class Stream(io.RawIOBase):  # not seekable: zipfile writes data descriptors
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += bytes(b)
            return len(b)

    s = Stream()
    with zipfile.ZipFile(s, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in FILES.items():
            zf.writestr(name, content)
    assert _check_bytes(tmp_path, s.data).files == 2


def test_local_name_other_than_the_central_one_is_refused(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "go.mod", GOMOD), RawEntry(P + "a.go", b"x")]))
    second = data.index(b"PK\x03\x04", 1)
    at = second + _L_NAME + len(P)
    data[at : at + 4] = b"b.go"  # the central directory still says a.go
    with pytest.raises(ZipError, match=r"local header of .*a\.go.* disagrees .*: name"):
        _check_bytes(tmp_path, data)


def test_local_compression_method_other_than_the_central_one_is_refused(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"package a\n", method=0)]))
    _put(data, _L_METHOD, 8, 2)
    with pytest.raises(ZipError, match=r"disagrees .*: compression method"):
        _check_bytes(tmp_path, data)


@pytest.mark.parametrize("field", [_L_CRC, _L_CSIZE, _L_SIZE])
def test_local_crc_or_sizes_other_than_the_central_ones_are_refused(
    tmp_path: Path, field: int
) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"package a\n" * 10)]))
    _put(data, field, int.from_bytes(data[field : field + 4], "little") + 1)
    with pytest.raises(ZipError, match=r"disagrees .*: CRC or sizes"):
        _check_bytes(tmp_path, data)


def test_a_data_descriptor_announced_only_locally_is_refused(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"package a\n")]))
    _put(data, _L_FLAGS, 0x800 | 0x8, 2)
    with pytest.raises(ZipError, match=r"disagrees .*: flags"):
        _check_bytes(tmp_path, data)


@pytest.mark.parametrize("at", [4, 8, 12])  # the descriptor's CRC, compressed size, size
def test_a_data_descriptor_that_disagrees_is_refused(tmp_path: Path, at: int) -> None:
    data = bytearray(_descriptor_zip({P + "a.go": b"package a\n" * 10}))
    desc = data.index(b"PK\x07\x08")
    _put(data, desc + at, int.from_bytes(data[desc + at : desc + at + 4], "little") ^ 0x10)
    with pytest.raises(ZipError, match=r"disagrees .*: data descriptor"):
        _check_bytes(tmp_path, data)


def test_a_missing_data_descriptor_is_refused(tmp_path: Path) -> None:
    honest = _descriptor_zip({P + "a.go": b"package a\n" * 10})
    desc = honest.index(b"PK\x07\x08")
    data = bytearray(honest[:desc] + honest[desc + 16 :])  # cut the descriptor out
    cd = _central(data)
    eocd = data.index(b"PK\x05\x06")
    _put(data, eocd + 16, cd)
    with pytest.raises(ZipError, match="data descriptor"):
        _check_bytes(tmp_path, data)


def test_local_sizes_that_lie_under_a_data_descriptor_are_refused(tmp_path: Path) -> None:
    data = bytearray(_descriptor_zip({P + "a.go": b"package a\n" * 10}))
    _put(data, _L_SIZE, 5)  # neither zero nor the central size
    with pytest.raises(ZipError, match=r"disagrees .*: CRC or sizes"):
        _check_bytes(tmp_path, data)


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    # a.go (stored) claims to be long enough to contain b.go's header and data: a
    # reader of a.go sees b.go's bytes, the classic overlapping-entries zip bomb.
    data = bytearray(
        build_zip([RawEntry(P + "a.go", b"package a\n", method=0), RawEntry(P + "b.go", b"x")])
    )
    second = data.index(b"PK\x03\x04", 1)
    cd = _central(data)
    span = cd - (_L_NAME + len(P + "a.go"))
    for at in (_L_CSIZE, _L_SIZE):
        _put(data, at, span)
    for at in (_C_CSIZE, _C_SIZE):
        _put(data, cd + at, span)
    assert second < span
    with pytest.raises(ZipError, match="overlaps another entry"):
        _check_bytes(tmp_path, data)


def test_two_directory_entries_sharing_one_local_header_are_refused(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"1"), RawEntry(P + "a.go", b"1")]))
    _put(data, _central(data, 1) + 42, 0)  # the second entry points at the first header
    with pytest.raises(ZipError, match="overlaps another entry"):
        _check_bytes(tmp_path, data)


def test_an_entry_reaching_into_the_central_directory_is_refused(tmp_path: Path) -> None:
    data = bytearray(build_zip([RawEntry(P + "a.go", b"package a\n", method=0)]))
    cd = _central(data)
    span = cd - (_L_NAME + len(P + "a.go")) + 10
    for at in (_L_CSIZE, _L_SIZE):
        _put(data, at, span)
    for at in (_C_CSIZE, _C_SIZE):
        _put(data, cd + at, span)
    with pytest.raises(ZipError, match="overlaps the central directory"):
        _check_bytes(tmp_path, data)
