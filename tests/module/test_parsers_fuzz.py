"""Fuzz tests for the module parsers a mirror's bytes reach: go.mod, zips; only domain errors come out.

``parse_gomod``, ``module_path`` and ``check_gomod_module`` get token soups
built from go.mod syntax (strings, escapes, blocks, comments, invalid
UTF-8); ``check_zip`` gets valid module zips with bytes flipped, cut,
overwritten with extreme 32-bit values, or inserted. The invariant: nothing
but a ``GomirrorError`` (in practice ``InvalidContent``) is ever raised.
Example counts are bounded so CI stays quick.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gomirror.errors import GomirrorError
from gomirror.module import gomod, modzip
from support.corpus import build_zip

M, V = "example.com/fuzz/mod", "v1.0.0"
PREFIX = f"{M}@{V}/"

_GOMOD_TOKENS = [
    b"module ",
    b"go ",
    b"retract ",
    b"require ",
    b"(",
    b")",
    b"[",
    b"]",
    b",",
    b'"',
    b"`",
    b"\\",
    b"\n",
    b"//",
    b"/*",
    b"v1.0.0",
    b"1.21",
    b" ",
    b"\t",
    b"\r",
    b"\xff",
    b"\x00",
    b"\\x",
    b"\\u12",
    b"\\777",
    b"\\U0010ffff",
    M.encode(),
    b"gopkg.in/x.v2",
    "é".encode(),
    "\u2028".encode(),
    b"\xed\xa0\x80",  # an encoded surrogate
    b"Deprecated: ",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_GOMOD_TOKENS), max_size=30).map(b"".join))
def test_gomod_parsers_only_raise_domain_errors(data: bytes) -> None:
    for check in (
        lambda: gomod.parse_gomod(data),
        lambda: gomod.module_path(data),
        lambda: gomod.check_gomod_module(data, M, V),
        lambda: gomod.check_gomod_module(data, M + "/v2", "v2.0.0"),
    ):
        try:
            check()
        except GomirrorError:
            pass


def _module_path_line_by_line(data: bytes) -> str:
    """modfile.ModulePath read literally, line by line: the reference for the fast scan."""
    for raw_line in data.decode("utf-8", "surrogateescape").split("\n"):
        line = raw_line.split("//", 1)[0].strip()
        if not line.startswith("module"):
            continue
        rest = line[len("module") :]
        stripped = rest.strip()
        if len(stripped) == len(rest) or not stripped:
            continue
        if stripped[0] == "`":
            ok = len(stripped) >= 2 and stripped.endswith("`") and "`" not in stripped[1:-1]
            return stripped[1:-1] if ok else ""
        if stripped[0] == '"':
            try:
                return gomod._go_unquote(stripped)
            except gomod._Error:
                return ""
        return stripped
    return ""


@settings(max_examples=800, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*_GOMOD_TOKENS, b"module", b"xmodule", b"\xc2\xa0", b"\xe2\x80\xa8", b"\x1c"]
        ),
        max_size=30,
    ).map(b"".join)
)
def test_module_path_finds_what_a_line_by_line_scan_finds(data: bytes) -> None:
    assert gomod.module_path(data) == _module_path_line_by_line(data)


def test_module_path_of_hostile_shapes() -> None:
    want = M
    tail = f"module {M}\n".encode()
    for filler in (b"\n", b"x\n", b"module //\n", b" \t\n", b"xmodule a\n", b"a module b\n"):
        assert gomod.module_path(filler * 10_000 + tail) == want
        assert gomod.module_path(filler * 10_000) == _module_path_line_by_line(filler * 10_000)
    assert gomod.module_path(b"  \t module   " + M.encode() + b"  // c\n") == want


def test_deeply_nested_gomod_blocks_are_an_error_not_a_crash() -> None:
    data = b"module " + M.encode() + b"\n" + b"require (\n" * 100_000
    try:
        gomod.parse_gomod(data)
    except GomirrorError:
        pass


def _stored_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(PREFIX + "go.mod", b"module example.com/fuzz/mod\n")
        z.writestr(PREFIX + "b.go", b"package mod\n")
    return buf.getvalue()


_ZIPS = [
    build_zip(
        [
            (PREFIX + "go.mod", b"module example.com/fuzz/mod\n"),
            (PREFIX + "a.go", b"package mod\n" * 50),
            (PREFIX + "LICENSE", b"x" * 300),
        ]
    ),
    build_zip(
        [
            (PREFIX + "go.mod", b"module example.com/fuzz/mod\ngo 1.24\n"),
            (PREFIX + "vendor/modules.txt", b"#"),
            (PREFIX + "sub/go.mod", b"module x\n"),
        ]
    ),
    _stored_zip(),
]

_EDIT = st.tuples(
    st.sampled_from(["flip", "cut", "u32", "insert"]),
    st.floats(min_value=0, max_value=1),
    st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x504B0304]),
    st.binary(min_size=1, max_size=16),
)


def _mutate(data: bytes, edits: list[tuple[str, float, int, bytes]]) -> bytes:
    b = bytearray(data)
    for op, where, value, blob in edits:
        i = int(where * max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] ^= 0xFF
        elif op == "cut":
            del b[i:]
        elif op == "u32" and len(b) >= 4:
            i = min(i, len(b) - 4)
            b[i : i + 4] = struct.pack("<L", value)
        else:
            b[i:i] = blob
    return bytes(b)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(_ZIPS), st.lists(_EDIT, min_size=1, max_size=5))
def test_check_zip_on_damaged_zips_only_raises_domain_errors(
    tmp_path: Path, base: bytes, edits: list[tuple[str, float, int, bytes]]
) -> None:
    path = tmp_path / "fuzz.zip"
    path.write_bytes(_mutate(base, edits))
    try:
        modzip.check_zip(path, M, V)
    except GomirrorError:
        pass


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=2000))
def test_check_zip_on_random_bytes_only_raises_domain_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.zip"
    path.write_bytes(b"PK\x03\x04" + data if data[:1] == b"\x00" else data)
    try:
        modzip.check_zip(path, M, V)
    except GomirrorError:
        pass
