"""zipread lists and streams the entries of an untrusted zip file without trusting its headers.

The central directory is parsed by :mod:`zipfile`, but entry data is read and
inflated here, in bounded chunks, so that: names are the raw bytes of the
archive (decoded UTF-8 with ``surrogateescape``, as Go sees them, never cp437
or NUL-truncated); only Store and Deflate are accepted (like Go's
``archive/zip``); an entry that inflates beyond its declared size, stops short
of it, is truncated, or fails its CRC raises :class:`ZipError`. Any malformed
input raises :class:`ZipError` (an :class:`InvalidContent`), never another
exception type.

The central directory is the truth, and the archive must agree with it
before anything is read (checked when the reader opens): every entry's local
header has the same name bytes, compression method and flags (encryption,
data descriptor, UTF-8), and the same CRC and sizes (zip64 extras resolved)
unless it announces a data descriptor, in which case they are zero or equal
and the descriptor after the data (with or without its signature, 32- or
64-bit sizes) must repeat the central CRC and sizes; and no two entries
(header, data and descriptor) overlap each other or the central directory.
A reader that believes local headers (many unzip tools do) could otherwise
see other names, sizes or bytes than the ones checked and hashed here, and
overlapping entries are how a small file inflates to gigabytes.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gomirror.errors import InvalidContent

__all__ = ["CHUNK", "ZipEntry", "ZipError", "ZipReader"]

CHUNK = 64 * 1024
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_MAGIC = b"PK\x03\x04"
_DESCRIPTOR_MAGIC = b"PK\x07\x08"
_FLAG_ENCRYPTED = 0x1
_FLAG_DESCRIPTOR = 0x8
_FLAG_UTF8 = 0x800
_COMPARED_FLAGS = _FLAG_ENCRYPTED | _FLAG_DESCRIPTOR | _FLAG_UTF8
_ZIP64_EXTRA = 0x0001
_MAX32 = 0xFFFFFFFF
_DESCRIPTOR_MAX = 24  # signature, CRC and two 64-bit sizes
_STORED, _DEFLATED = 0, 8
_NOT_VALID = "zip: not a valid zip file"


class ZipError(InvalidContent):
    """A module zip breaks the zip format or the module zip rules; the message says which."""


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One central-directory entry: its Go-visible name and what its headers claim."""

    name: str
    size: int  # declared uncompressed size
    compressed_size: int
    method: int
    crc: int
    flags: int
    header_offset: int

    @property
    def is_dir(self) -> bool:
        """Report whether the name marks a directory entry (ends in ``/``)."""
        return self.name.endswith("/")


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """Return the entry name's bytes as the central directory holds them."""
    if info.flag_bits & _FLAG_UTF8:
        return info.orig_filename.encode("utf-8")
    return info.orig_filename.encode("cp437")  # zipfile decoded them as cp437


def _zip64_sizes(extra: bytes, size: int, compressed: int) -> tuple[int, int]:
    """Resolve 0xFFFFFFFF local sizes from a zip64 extra field (both sizes, in that order)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == _ZIP64_EXTRA:
            values = list(struct.unpack_from(f"<{len(body) // 8}Q", body))
            if size == _MAX32 and values:
                size = values.pop(0)
            if compressed == _MAX32 and values:
                compressed = values.pop(0)
            break
        pos += 4 + length
    return size, compressed


def _descriptor_length(buf: bytes, e: ZipEntry) -> int | None:
    """The length of the data descriptor at the start of buf if it repeats e's CRC and sizes."""
    want = (e.crc, e.compressed_size, e.size)
    starts = (4, 0) if buf[:4] == _DESCRIPTOR_MAGIC else (0,)
    for start in starts:
        if len(buf) >= start + 12 and struct.unpack_from("<3L", buf, start) == want:
            return start + 12
        if len(buf) >= start + 20 and struct.unpack_from("<L2Q", buf, start) == want:
            return start + 20
    return None


def _go_name(info: zipfile.ZipInfo) -> str:
    """Return the entry name as Go reads it: the raw bytes, decoded UTF-8 with surrogateescape."""
    raw = info.orig_filename
    if info.flag_bits & _FLAG_UTF8:
        return raw  # zipfile decoded it as strict UTF-8 already
    # zipfile decoded the raw bytes as cp437, a bijection on bytes: undo it.
    return raw.encode("cp437").decode("utf-8", "surrogateescape")


def _check_no_overlap(spans: list[tuple[int, int, str]], limit: int) -> None:
    """Refuse entries (start, end, name) that overlap each other or reach past ``limit``."""
    end_before = 0
    for start, end, name in sorted(spans):
        if start < end_before:
            raise ZipError(f"{_NOT_VALID} (entry {name!r} overlaps another entry)")
        end_before = end
    if end_before > limit:
        raise ZipError(f"{_NOT_VALID} (an entry overlaps the central directory)")


class ZipReader:
    """An open untrusted zip file; use as a context manager.

    ``entries`` lists every central-directory entry in archive order,
    duplicates and directory entries included.
    """

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("rb")
        self._data_at: dict[int, int] = {}  # header offset -> data offset, checked at open
        try:
            self._file.seek(0, 2)
            self.file_size = self._file.tell()
            self._file.seek(0)
            self.entries = self._read_directory()
        except BaseException:
            self._file.close()
            raise

    def _read_directory(self) -> list[ZipEntry]:
        try:
            with zipfile.ZipFile(self._file) as zf:
                infos = zf.infolist()
                directory_start = getattr(zf, "start_dir", None)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise ZipError(f"{_NOT_VALID} ({e})") from None
        except (ValueError, struct.error, EOFError, OverflowError, UnicodeDecodeError) as e:
            raise ZipError(f"{_NOT_VALID} ({type(e).__name__}: {e})") from None
        except NotImplementedError as e:
            raise ZipError(f"zip: unsupported feature: {e}") from None
        entries: list[ZipEntry] = []
        spans: list[tuple[int, int, str]] = []
        for info in infos:
            try:
                name = _go_name(info)
                raw = _raw_name(info)
            except (UnicodeError, ValueError):
                raise ZipError(f"{_NOT_VALID} (undecodable entry name)") from None
            entry = ZipEntry(
                name=name,
                size=info.file_size,
                compressed_size=info.compress_size,
                method=info.compress_type,
                crc=info.CRC,
                flags=info.flag_bits,
                header_offset=info.header_offset,
            )
            start, end = self._check_local(entry, raw)
            self._data_at[entry.header_offset] = start
            spans.append((entry.header_offset, end, name))
            entries.append(entry)
        end_limit = directory_start if isinstance(directory_start, int) else self.file_size
        _check_no_overlap(spans, end_limit)
        return entries

    def _check_local(self, e: ZipEntry, raw_name: bytes) -> tuple[int, int]:
        """Check e's local header (and descriptor) against the central directory.

        Returns where e's data starts and where the entry (descriptor included) ends.
        """
        if e.header_offset < 0 or e.header_offset + _LOCAL_HEADER.size > self.file_size:
            raise ZipError(f"{_NOT_VALID} (entry {e.name!r} header out of range)")
        self._file.seek(e.header_offset)
        fields = _LOCAL_HEADER.unpack(self._file.read(_LOCAL_HEADER.size))
        magic, _, flags, method, _, _, crc, compressed, size, name_len, extra_len = fields
        if magic != _LOCAL_MAGIC:
            raise ZipError(f"{_NOT_VALID} (bad local header for {e.name!r})")
        start: int = e.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start > self.file_size:
            raise ZipError(f"{_NOT_VALID} (entry {e.name!r} header out of range)")
        local_name = self._file.read(name_len)
        extra = self._file.read(extra_len)

        def disagree(what: str) -> ZipError:
            return ZipError(
                f"{_NOT_VALID} (local header of {e.name!r} disagrees with the central directory:"
                f" {what})"
            )

        if local_name != raw_name:
            raise disagree("name")
        if method != e.method:
            raise disagree("compression method")
        if (flags ^ e.flags) & _COMPARED_FLAGS:
            raise disagree("flags")
        size, compressed = _zip64_sizes(extra, size, compressed)
        declared = (crc, compressed, size)
        central = (e.crc, e.compressed_size, e.size)
        data_end = start + e.compressed_size
        if data_end > self.file_size:
            raise ZipError(f"{_NOT_VALID} (entry {e.name!r} is truncated)")
        if not flags & _FLAG_DESCRIPTOR:
            if declared != central:
                raise disagree("CRC or sizes")
            return start, data_end
        if declared not in ((0, 0, 0), central):
            raise disagree("CRC or sizes")
        self._file.seek(data_end)
        length = _descriptor_length(self._file.read(_DESCRIPTOR_MAX), e)
        if length is None:
            raise disagree("data descriptor")
        return start, data_end + length

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    def __enter__(self) -> ZipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _data_start(self, e: ZipEntry) -> int:
        start = self._data_at.get(e.header_offset)
        if start is None:
            raise ZipError(f"{_NOT_VALID} (entry {e.name!r} is not in this archive)")
        return start

    def _raw_chunks(self, start: int, length: int) -> Iterator[bytes]:
        pos = start
        end = start + length
        while pos < end:
            # Seek every time: callers may interleave other reads on the file.
            self._file.seek(pos)
            chunk = self._file.read(min(CHUNK, end - pos))
            if not chunk:
                raise ZipError(f"{_NOT_VALID} (unexpected end of file)")
            pos += len(chunk)
            yield chunk

    def iter_content(self, e: ZipEntry) -> Iterator[bytes]:
        """Yield the content of ``e`` in chunks, enforcing its declared size and CRC."""
        if e.flags & _FLAG_ENCRYPTED:
            raise ZipError(f"zip: encrypted entry {e.name!r} is not supported")
        if e.method not in (_STORED, _DEFLATED):
            raise ZipError("zip: unsupported compression algorithm")
        start = self._data_start(e)
        crc = 0
        total = 0
        for piece in self._inflate(e, start):
            total += len(piece)
            if total > e.size:
                raise ZipError(
                    f"uncompressed size of file {e.name} is larger than declared size "
                    f"({e.size} bytes)"
                )
            crc = zlib.crc32(piece, crc)
            yield piece
        if total != e.size:
            raise ZipError(f"{_NOT_VALID} (file {e.name} is shorter than declared size)")
        # Go skips the check when the recorded CRC is zero and no descriptor exists.
        if (e.crc != 0 or e.flags & 0x8) and crc != e.crc:
            raise ZipError(f"zip: checksum error in file {e.name}")

    def _inflate(self, e: ZipEntry, start: int) -> Iterator[bytes]:
        raw = self._raw_chunks(start, e.compressed_size)
        if e.method == _STORED:
            yield from raw
            return
        d = zlib.decompressobj(-15)
        # Never inflate more than one byte past the declared size: that byte is
        # enough to prove the lie, and the bound keeps zip bombs cheap.
        budget = e.size + 1
        try:
            for chunk in raw:
                data = chunk
                while data and not d.eof:
                    out = d.decompress(data, min(CHUNK, budget))
                    if out:
                        budget -= len(out)
                        yield out
                        if budget <= 0:
                            return
                    data = d.unconsumed_tail
                if d.eof:
                    break
            while not d.eof and budget > 0:
                out = d.decompress(b"", min(CHUNK, budget))
                if not out:
                    break
                budget -= len(out)
                yield out
        except zlib.error as err:
            raise ZipError(f"zip: corrupt deflate data in {e.name}: {err}") from None
        if not d.eof:
            raise ZipError(f"{_NOT_VALID} (deflate data of {e.name} is truncated)")

    def read_all(self, e: ZipEntry) -> bytes:
        """Return the whole content of ``e`` (callers bound ``e.size`` first)."""
        return b"".join(self.iter_content(e))
