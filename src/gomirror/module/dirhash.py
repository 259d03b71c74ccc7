"""dirhash computes Go's ``h1:`` hashes (dirhash.Hash1) of file trees, module zips and go.mod files.

``h1:`` is base64(sha256(summary)) where the summary has one line
``hex(sha256(content)) + "  " + name + "\\n"`` per file, names sorted bytewise
(protocol.md §3.1). File contents are always streamed, never loaded whole.
A module zip hashes every entry name including the ``path@version/`` prefix
(directory entries too, as empty-named-with-slash files), while a go.mod is
hashed under the bare name ``go.mod`` (§3.2).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from gomirror.module.zipread import CHUNK, ZipError, ZipReader

__all__ = [
    "EMPTY_GOMOD_H1",
    "EMPTY_H1",
    "MAX_HASHED_ZIP_CONTENT",
    "format_h1",
    "hash1",
    "hash_bytes_files",
    "hash_gomod",
    "hash_zip",
    "summary_line",
]

EMPTY_GOMOD_H1 = "h1:G7mAYYxgmS0lVkHyy2hEOLQCFB0DlQFTMLWggykrydY="
"""The ``/go.mod`` hash of an empty go.mod; the go command ignores go.sum lines with it."""

EMPTY_H1 = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
"""The hash of a tree with no files (an empty module zip)."""

MAX_HASHED_ZIP_CONTENT = 500 << 20
"""Upper bound on the bytes :func:`hash_zip` will inflate, matching MaxZipFile."""

_NEWLINE_ERROR = "dirhash: filenames with newlines are not supported"


def _sort_key(name: str) -> bytes:
    # Go sorts names as byte strings; UTF-8 bytes (surrogateescape for raw bytes) give that order.
    return name.encode("utf-8", "surrogateescape")


def summary_line(name: str, content_sha256_hex: str) -> bytes:
    """Return the summary line for one file, as UTF-8 (raw bytes preserved) bytes."""
    if "\n" in name:
        raise ValueError(_NEWLINE_ERROR)
    return f"{content_sha256_hex}  {name}\n".encode("utf-8", "surrogateescape")


def format_h1(file_digests: Iterable[tuple[str, str]]) -> str:
    """Return the ``h1:`` hash from (name, hex sha256 of content) pairs, in any order."""
    h = hashlib.sha256()
    for name, digest in sorted(file_digests, key=lambda item: _sort_key(item[0])):
        h.update(summary_line(name, digest))
    return "h1:" + base64.b64encode(h.digest()).decode("ascii")


def _sha256_stream(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def hash1(names: Iterable[str], open_file: Callable[[str], BinaryIO]) -> str:
    """Return the ``h1:`` hash of the files ``names``, reading each through ``open_file``.

    Raises ValueError (with Go's message) for a name containing a newline,
    before opening anything after it in sorted order. A name listed twice is
    hashed twice, as Go does.
    """
    h = hashlib.sha256()
    for name in sorted(names, key=_sort_key):
        if "\n" in name:
            raise ValueError(_NEWLINE_ERROR)
        with open_file(name) as f:
            digest = _sha256_stream(f)
        h.update(summary_line(name, digest))
    return "h1:" + base64.b64encode(h.digest()).decode("ascii")


def hash_bytes_files(files: Mapping[str, bytes]) -> str:
    """Return the ``h1:`` hash of in-memory files (name -> content)."""
    return hash1(files.keys(), lambda name: io.BytesIO(files[name]))


def hash_gomod(data: bytes) -> str:
    """Return the ``/go.mod`` hash of a go.mod's content (the name hashed is ``go.mod``)."""
    return format_h1([("go.mod", hashlib.sha256(data).hexdigest())])


def hash_zip(path: Path, max_content: int = MAX_HASHED_ZIP_CONTENT) -> str:
    """Return the ``h1:`` of every entry of the zip at ``path`` (Go's ``dirhash.HashZip``).

    Each entry's declared size is enforced while inflating, and at most
    ``max_content`` bytes are inflated in total. Raises :class:`ZipError` for a
    malformed zip, ValueError for an entry name containing a newline.
    """
    with ZipReader(path) as z:
        # Go looks entries up by name, so for duplicate names the last one wins.
        by_name = {e.name: e for e in z.entries}
        names = [e.name for e in z.entries]
        h = hashlib.sha256()
        budget = max_content
        for name in sorted(names, key=_sort_key):
            if "\n" in name:
                raise ValueError(_NEWLINE_ERROR)
            fh = hashlib.sha256()
            for chunk in z.iter_content(by_name[name]):
                budget -= len(chunk)
                if budget < 0:
                    raise ZipError(f"zip content exceeds {max_content} bytes")
                fh.update(chunk)
            h.update(summary_line(name, fh.hexdigest()))
    return "h1:" + base64.b64encode(h.digest()).decode("ascii")
