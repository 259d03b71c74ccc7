"""Known-answer tests for gomirror.module.dirhash against the ``dirhash`` vectors."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from modtestkit import RawEntry, vector_bytes, write_zip

from gomirror.module import dirhash
from gomirror.module.modzip import ZipError
from support.vectors import group

V = group("dirhash")


@pytest.mark.parametrize("case", V["hash1"], ids=[c["desc"][:40] for c in V["hash1"]])
def test_hash1(case: dict[str, Any]) -> None:
    files = {f["name"]: vector_bytes(f) for f in case["files"]}
    opened: list[str] = []

    def open_file(name: str) -> io.BytesIO:
        opened.append(name)
        return io.BytesIO(files[name])

    assert dirhash.hash1(list(files), open_file) == case["h1"]
    assert dirhash.hash_bytes_files(files) == case["h1"]
    summary = b"".join(
        dirhash.summary_line(n, hashlib.sha256(files[n]).hexdigest()) for n in opened
    )
    assert summary.decode() == case["summary"]


def test_constants() -> None:
    assert dirhash.hash_gomod(b"") == V["go_cmd_empty_gomod_hash_constant"]
    assert V["go_cmd_empty_gomod_hash_constant"] == dirhash.EMPTY_GOMOD_H1
    assert dirhash.hash_bytes_files({}) == dirhash.EMPTY_H1
    quote = b'module "rsc.io/quote"\n\nrequire "rsc.io/sampler" v1.3.0\n'
    assert dirhash.hash_gomod(quote) == "h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0="


def test_newline_in_name() -> None:
    with pytest.raises(ValueError, match=V["newline_in_name_error"]):
        dirhash.hash_bytes_files({"a\nb": b""})


def test_hash_zip_two_files(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path,
        [RawEntry("prefix/xyz", b"data for xyz"), RawEntry("prefix/abc", b"data for abc")],
    )
    assert dirhash.hash_zip(path) == V["hash_zip_two_files"]


def test_hash_zip_counts_directory_entries(tmp_path: Path) -> None:
    case = V["hash_zip_with_directory_entry"]
    data = {"prefix/abc": b"data for abc"}
    entries = [RawEntry(n, data.get(n, b""), method=0) for n in case["entries"]]
    assert dirhash.hash_zip(write_zip(tmp_path, entries)) == case["h1"]


def test_hash_zip_bounds_content(tmp_path: Path) -> None:
    path = write_zip(tmp_path, [RawEntry("p/a", b"x" * 1000)])
    with pytest.raises(ZipError):
        dirhash.hash_zip(path, max_content=10)
