"""Known-answer tests for gomirror.module.modzip against every case of the ``zip`` vectors.

``vcs_real_modules`` needs the network (git clones of public repositories) and
is only checked for shape here; its h1 values are exercised indirectly by the
same create/hash code that the offline vectors pin.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from modtestkit import RawEntry, vector_bytes, vector_str, write_zip

from gomirror.errors import GomirrorError, InvalidPath, InvalidVersion
from gomirror.module import dirhash, modzip, paths
from gomirror.module.modzip import CheckedFiles, FileKind, ZipError, ZipFile
from support.vectors import group

V = group("zip")


def _report(cf: CheckedFiles) -> str:
    """Format a CheckedFiles the way golang/mod's zip tests print their ``want`` member."""
    out = "valid:\n" + "".join(p + "\n" for p in cf.valid)
    out += "\nomitted:\n" + "".join(f"{p}: {r}\n" for p, r in cf.omitted)
    out += "\ninvalid:\n" + "".join(f"{p}: {r}\n" for p, r in cf.invalid)
    return out


def _inputs(case: dict[str, Any]) -> list[ZipFile]:
    return [ZipFile.from_bytes(f["name"], vector_bytes(f)) for f in case["files"]]


def _write_tree(root: Path, files: list[dict[str, Any]]) -> None:
    for f in files:
        target = root / f["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(vector_bytes(f))


def _entry_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [i.filename for i in z.infolist()]


def _assert_go_style_entries(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.extra == b""
            assert not info.filename.endswith("/")
            assert info.date_time[:3] == (1980, 0, 0)


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


@pytest.mark.parametrize("case", V["create"], ids=_ids(V["create"]))
def test_create(case: dict[str, Any], tmp_path: Path) -> None:
    module, version = vector_str(case["path"]), case["version"]
    buf = io.BytesIO()
    if "want_err_substring" in case:
        with pytest.raises(GomirrorError) as e:
            modzip.create_zip(buf, module, version, _inputs(case))
        assert case["want_err_substring"] in str(e.value)
        return
    result = modzip.create_zip(buf, module, version, _inputs(case))
    assert result.h1 == case["want_hash"]
    data = buf.getvalue()
    assert _entry_names(data) == (case["zip_entries"] or [])
    _assert_go_style_entries(data)
    # The zip we wrote passes our own checker and hashes the same.
    path = tmp_path / "out.zip"
    path.write_bytes(data)
    checked = modzip.check_zip(path, module, version)
    assert checked.h1 == case["want_hash"]
    assert dirhash.hash_zip(path) == case["want_hash"]


@pytest.mark.parametrize("case", V["create_from_dir"], ids=_ids(V["create_from_dir"]))
def test_create_from_dir(case: dict[str, Any], tmp_path: Path) -> None:
    module, version = vector_str(case["path"]), case["version"]
    work = tmp_path / "work"
    work.mkdir()
    _write_tree(work, case["files"])
    buf = io.BytesIO()
    if "want_err_substring" in case:
        with pytest.raises(GomirrorError) as e:
            modzip.create_zip_from_dir(buf, module, version, work)
        assert case["want_err_substring"] in str(e.value)
        return
    result = modzip.create_zip_from_dir(buf, module, version, work)
    assert result.h1 == case["want_hash"]
    assert _entry_names(buf.getvalue()) == (case["zip_entries"] or [])


def test_create_from_dir_special_empty_subdirectory(tmp_path: Path) -> None:
    case = V["create_from_dir_special"][0]
    (tmp_path / "empty").mkdir()
    result = modzip.create_zip_from_dir(io.BytesIO(), case["path"], case["version"], tmp_path)
    assert result.h1 == case["want_hash"]


def test_create_from_dir_special_self_symlink(tmp_path: Path) -> None:
    case = V["create_from_dir_special"][1]
    (tmp_path / "link").symlink_to(tmp_path / "link")
    result = modzip.create_zip_from_dir(io.BytesIO(), case["path"], case["version"], tmp_path)
    assert result.h1 == case["want_hash"]
    assert ("link", "not a regular file") in result.omitted


def test_create_from_dir_special_root_named_vendor(tmp_path: Path) -> None:
    case = V["create_from_dir_special"][2]
    root = tmp_path / "vendor"
    root.mkdir()
    (root / "go.mod").write_bytes(b"module example.com/m\n\ngo 1.13\n")
    result = modzip.create_zip_from_dir(io.BytesIO(), case["path"], case["version"], root)
    assert result.h1 == case["want_hash"]


@pytest.mark.parametrize("case", V["unzip"], ids=_ids(V["unzip"]))
def test_unzip_cases_with_check_zip(case: dict[str, Any], tmp_path: Path) -> None:
    module, version = vector_str(case["path"]), case["version"]
    path = write_zip(tmp_path, [RawEntry(f["name"], vector_bytes(f)) for f in case["files"]])
    if "want_err_substring" in case:
        with pytest.raises(GomirrorError) as e:
            modzip.check_zip(path, module, version)
        assert case["want_err_substring"] in str(e.value)
        if isinstance(e.value, ZipError):
            # Go reports "unzip <zip>: <entry>: <reason>"; we report "<entry>: <reason>".
            assert case["got_error"].endswith(str(e.value))
        else:
            assert isinstance(e.value, InvalidPath | InvalidVersion)
        return
    checked = modzip.check_zip(path, module, version)
    assert checked.h1 == case["want_hash"]
    assert checked.size == path.stat().st_size


@pytest.mark.parametrize("case", V["check_zip"], ids=_ids(V["check_zip"]))
def test_check_zip_report(case: dict[str, Any], tmp_path: Path) -> None:
    path = write_zip(tmp_path, [RawEntry(f["name"], vector_bytes(f)) for f in case["files"]])
    cf = modzip.check_zip_files(path, case["path"], case["version"])
    assert _report(cf) == case["want_report"]
    if cf.invalid:
        with pytest.raises(ZipError) as e:
            modzip.check_zip(path, case["path"], case["version"])
        assert str(e.value) == cf.error()


@pytest.mark.parametrize("case", V["check_files"], ids=_ids(V["check_files"]))
def test_check_files_report(case: dict[str, Any]) -> None:
    assert _report(modzip.check_files(_inputs(case))) == case["want_report"]


@pytest.mark.parametrize("case", V["check_dir"], ids=_ids(V["check_dir"]))
def test_check_dir_report(case: dict[str, Any], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _write_tree(work, case["files"])
    report = _report(modzip.check_dir(work)).replace(str(work), "$work")
    assert report == case["want_report"]


class _ZeroReader(io.RawIOBase):
    """Reads ``n`` zero bytes without allocating them all."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


SIZE_CASES = [c for c in V["size_limits"]["cases"] if "files" in c]


@pytest.mark.parametrize("case", SIZE_CASES, ids=[c["desc"] for c in SIZE_CASES])
def test_size_limits_check_files(case: dict[str, Any]) -> None:
    files = [ZipFile(f["name"], f["size"], lambda: io.BytesIO(b"")) for f in case["files"]]
    err = modzip.check_files(files).error()
    if case.get("ok"):
        assert err is None
    else:
        want = case.get("check_files_or_create_error") or case["error"]
        assert err is not None and want in err


@pytest.mark.parametrize("case", SIZE_CASES, ids=[c["desc"] for c in SIZE_CASES])
def test_size_limits_check_zip(case: dict[str, Any], tmp_path: Path) -> None:
    # Entries declare the sizes but hold no data: CheckZip judges declared sizes.
    prefix = "example.com/large@v1.0.0/"
    entries = [
        RawEntry(prefix + f["name"], b"", method=0, declared_size=f["size"]) for f in case["files"]
    ]
    path = write_zip(tmp_path, entries)
    err = modzip.check_zip_files(path, "example.com/large", "v1.0.0").error()
    if case.get("ok"):
        assert err is None
        # Hashing then refuses, because the content is not really there.
        with pytest.raises(ZipError):
            modzip.check_zip(path, "example.com/large", "v1.0.0")
    else:
        want = case.get("check_zip_or_unzip_error") or case["error"]
        assert err is not None and want in err
        with pytest.raises(ZipError, match=want):
            modzip.check_zip(path, "example.com/large", "v1.0.0")


def test_size_limit_create_larger_than_declared() -> None:
    files = [ZipFile("large.go", 1, lambda: io.BytesIO(b"package large"))]
    with pytest.raises(ZipError, match="larger than declared size"):
        modzip.create_zip(io.BytesIO(), "example.com/large", "v1.0.0", files)


def test_size_limit_zip_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    with path.open("wb") as f:
        f.truncate(modzip.MAX_ZIP_FILE + 1)  # sparse: no disk used
    with pytest.raises(ZipError, match="module zip file is too large"):
        modzip.check_zip(path, "example.com/large", "v1.0.0")
    cf = modzip.check_zip_files(path, "example.com/large", "v1.0.0")
    assert cf.size_error is not None and "module zip file is too large" in cf.size_error


def test_size_limit_header_smaller_than_data(tmp_path: Path) -> None:
    data = b"module example.com/m\n"
    path = write_zip(
        tmp_path, [RawEntry("example.com/m@v1.0.0/go.mod", data, declared_size=len(data) - 1)]
    )
    with pytest.raises(ZipError, match="larger than declared size"):
        modzip.check_zip(path, "example.com/m", "v1.0.0")


def test_create_exactly_max_size_streams(tmp_path: Path) -> None:
    """A 500 MiB file of zeros is accepted and streamed (checks memory stays bounded)."""
    n = modzip.MAX_ZIP_FILE
    files = [ZipFile("large.go", n, lambda: _ZeroReader(n))]  # type: ignore[arg-type,return-value]
    with (tmp_path / "big.zip").open("wb") as out:
        modzip.create_zip(out, "example.com/large", "v1.0.0", files)
    checked = modzip.check_zip(tmp_path / "big.zip", "example.com/large", "v1.0.0")
    assert checked.files == 1


def test_vcs_real_modules_shape() -> None:
    cases = V["vcs_real_modules"]["cases"]
    assert len(cases) == 23
    for c in cases:
        assert c["h1"].startswith("h1:") and len(c["h1"]) == 47
        assert c["version"] == paths.canonical_version(c["version"])


def test_symlink_and_irregular_inputs_are_omitted() -> None:
    files = [
        ZipFile.from_bytes("a.go", b"package a\n"),
        ZipFile.from_bytes("link.go", b"", FileKind.SYMLINK),
        ZipFile.from_bytes("fifo", b"", FileKind.OTHER),
    ]
    result = modzip.create_zip(io.BytesIO(), "example.com/m", "v1.0.0", files)
    assert result.omitted == [
        ("link.go", "file is a symbolic link"),
        ("fifo", "not a regular file"),
    ]
