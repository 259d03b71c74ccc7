"""zipread lists and streams the entries of an untrusted zip file without trusting its headers.

The central directory is parsed by :mod:`zipfile`, but entry data is read and
inflated here, in bounded chunks, so that: names are the raw bytes of the
archive (decoded UTF-8 with ``surrogateescape``, as Go sees them, never cp437
or NUL-truncated); only Store and Deflate are accepted (like Go's
``archive/zip``); an entry that inflates beyond its declared size, stops short
of it, is truncated, or fails its CRC raises :class:`ZipError`. Any malformed
input raises :class:`ZipError` (an :class:`InvalidContent`), never another
exception type.
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
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
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


def _go_name(info: zipfile.ZipInfo) -> str:
    """Return the entry name as Go reads it: the raw bytes, decoded UTF-8 with surrogateescape."""
    raw = info.orig_filename
    if info.flag_bits & _FLAG_UTF8:
        return raw  # zipfile decoded it as strict UTF-8 already
    # zipfile decoded the raw bytes as cp437, a bijection on bytes: undo it.
    return raw.encode("cp437").decode("utf-8", "surrogateescape")


class ZipReader:
    """An open untrusted zip file; use as a context manager.

    ``entries`` lists every central-directory entry in archive order,
    duplicates and directory entries included.
    """

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("rb")
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
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise ZipError(f"{_NOT_VALID} ({e})") from None
        except (ValueError, struct.error, EOFError, OverflowError, UnicodeDecodeError) as e:
            raise ZipError(f"{_NOT_VALID} ({type(e).__name__}: {e})") from None
        except NotImplementedError as e:
            raise ZipError(f"zip: unsupported feature: {e}") from None
        entries: list[ZipEntry] = []
        for info in infos:
            try:
                name = _go_name(info)
            except (UnicodeError, ValueError):
                raise ZipError(f"{_NOT_VALID} (undecodable entry name)") from None
            entries.append(
                ZipEntry(
                    name=name,
                    size=info.file_size,
                    compressed_size=info.compress_size,
                    method=info.compress_type,
                    crc=info.CRC,
                    flags=info.flag_bits,
                    header_offset=info.header_offset,
                )
            )
        return entries

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    def __enter__(self) -> ZipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _data_start(self, e: ZipEntry) -> int:
        if e.header_offset < 0 or e.header_offset + _LOCAL_HEADER.size > self.file_size:
            raise ZipError(f"{_NOT_VALID} (entry {e.name!r} header out of range)")
        self._file.seek(e.header_offset)
        fields = _LOCAL_HEADER.unpack(self._file.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_MAGIC:
            raise ZipError(f"{_NOT_VALID} (bad local header for {e.name!r})")
        name_len, extra_len = fields[-2], fields[-1]
        start: int = e.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if start + e.compressed_size > self.file_size:
            raise ZipError(f"{_NOT_VALID} (entry {e.name!r} is truncated)")
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
