"""modtestkit builds zip files byte by byte for the module tests, including hostile ones.

Python's zipfile refuses to write duplicate names or lie about sizes, so
hostile archives are assembled here from raw headers.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RawEntry:
    """One entry to write; ``declared_size``/``crc`` override the true values when set."""

    name: bytes | str
    data: bytes = b""
    method: int = 8
    declared_size: int | None = None
    crc: int | None = None
    flags: int = 0x800
    raw_payload: bytes | None = None  # written instead of the compressed data when set


def build_zip(entries: list[RawEntry]) -> bytes:
    """Return the bytes of a zip file holding ``entries`` in order."""
    out = bytearray()
    central = bytearray()
    for e in entries:
        name = e.name.encode("utf-8", "surrogateescape") if isinstance(e.name, str) else e.name
        if e.raw_payload is not None:
            payload = e.raw_payload
        elif e.method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = c.compress(e.data) + c.flush()
        else:
            payload = e.data
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        size = len(e.data) if e.declared_size is None else e.declared_size
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            e.flags,
            e.method,
            0,
            0,
            crc,
            len(payload),
            size,
            len(name),
            0,
        )
        out += name + payload
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            e.flags,
            e.method,
            0,
            0,
            crc,
            len(payload),
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    cd_offset = len(out)
    out += central
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, 0
    )
    return bytes(out)


def vector_bytes(f: dict[str, Any]) -> bytes:
    """Return the content of a vector file ({"data": {"text": ...}})."""
    data = f["data"]
    if "text" in data:
        return str(data["text"]).encode("utf-8")
    return bytes.fromhex(data["hex"])


def vector_str(value: Any) -> str:
    """Return a vector string, decoding {"hex": ...} byte strings with surrogateescape."""
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"]).decode("utf-8", "surrogateescape")
    return str(value)


def write_zip(tmp: Path, entries: list[RawEntry], name: str = "m.zip") -> Path:
    """Write ``entries`` as a zip under ``tmp`` and return its path."""
    path = tmp / name
    path.write_bytes(build_zip(entries))
    return path
