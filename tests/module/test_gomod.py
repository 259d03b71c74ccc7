"""Tests for gomirror.module.gomod: lax go.mod parsing, module-line checks, synthesis."""

from __future__ import annotations

import pytest

from gomirror.errors import InvalidContent
from gomirror.module import dirhash, gomod
from gomirror.module.gomod import Retraction

FULL = b"""// Deprecated: use example.com/b instead.
module example.com/a

go 1.21.3

toolchain go1.22.0

godebug default=go1.21

require (
\texample.com/x v1.0.0 // indirect
\t"example.com/y" v1.2.0
)

require example.com/z v0.1.0

replace example.com/x => ../x

exclude example.com/y v1.1.0

tool example.com/x/cmd

ignore ./third_party

// bad release
retract v1.0.0

retract [v1.1.0, v1.2.0] // broken range

retract (
\t// leaked secret
\tv1.3.0
\t[v1.4.0, v1.5.0]
)

futuredirective whatever (x)
"""


def test_full_file() -> None:
    g = gomod.parse_gomod(FULL)
    assert g.module == "example.com/a"
    assert g.go == "1.21.3"
    assert g.deprecated == "use example.com/b instead."
    assert g.retract == [
        Retraction("v1.0.0", "v1.0.0", "bad release"),
        Retraction("v1.1.0", "v1.2.0", "broken range"),
        Retraction("v1.3.0", "v1.3.0", "leaked secret"),
        Retraction("v1.4.0", "v1.5.0", ""),
    ]


def test_quoted_module_path_and_escapes() -> None:
    assert gomod.parse_gomod(b'module "rsc.io/quote"\n').module == "rsc.io/quote"
    assert gomod.parse_gomod(b'module "a\\x2eb/\\u0063"\n').module == "a.b/c"


def test_minimal_and_empty() -> None:
    assert gomod.parse_gomod(b"") == gomod.GoMod()
    assert gomod.parse_gomod(b"module m\n").module == "m"
    assert gomod.parse_gomod(b"module m").module == "m"  # no final newline
    assert gomod.parse_gomod(b"module m\r\ngo 1.22\r\n").go == "1.22"


def test_module_in_block_and_suffix_deprecation() -> None:
    g = gomod.parse_gomod(b"module (\n\texample.com/a // Deprecated: gone\n)\n")
    assert g.module == "example.com/a"
    assert g.deprecated == "gone"


def test_deprecation_paragraph_rules() -> None:
    text = b"// Package a.\n//\n// Deprecated: use b.\n//\n// More text.\nmodule a.b/c\n"
    assert gomod.parse_gomod(text).deprecated == "use b."
    mid = b"// Hello Deprecated: not a paragraph start\nmodule a.b/c\n"
    assert gomod.parse_gomod(mid).deprecated is None
    detached = b"// Deprecated: detached by a blank line\n\nmodule a.b/c\n"
    assert gomod.parse_gomod(detached).deprecated is None


def test_lax_go_version_and_bad_retract_dropped() -> None:
    g = gomod.parse_gomod(b"module m\ngo 1.21-custom\nretract v1\nretract [v1.0.0 v2.0.0]\n")
    assert g.go == "1.21"
    assert g.retract == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"module a\nmodule b\n", "repeated module statement"),
        (b"module a b\n", "usage: module module/path"),
        (b"module a\ngo 1.21\ngo 1.22\n", "repeated go statement"),
        (b"go banana\n", "invalid go version"),
        (b'module "unterminated\n', "unexpected newline in string"),
        (b'module "unterminated', "unexpected EOF in string"),
        (b"require (\n\ta v1.0.0\n", "unterminated block"),
        (b"/* block comment */\nmodule a\n", "must use // comments"),
        (b"module 'a'\n", "unquoted string cannot contain quote"),
        (b'module "bad\\q"\n', "invalid quoted string"),
        (b"require (\n) x\n", "expected newline after closing paren"),
    ],
)
def test_syntax_errors(text: bytes, fragment: str) -> None:
    with pytest.raises(InvalidContent, match=r"go\.mod:") as e:
        gomod.parse_gomod(text)
    assert fragment in str(e.value)


def test_go_version_at_least() -> None:
    assert gomod.go_version_at_least("1.24", 1, 24)
    assert gomod.go_version_at_least("1.24rc1", 1, 24)
    assert gomod.go_version_at_least("2.0", 1, 24)
    assert not gomod.go_version_at_least("1.23.9", 1, 24)
    assert not gomod.go_version_at_least(None, 1, 24)


def test_module_path_quick_scan() -> None:
    assert gomod.module_path(b"// c\nmodule  example.com/a // x\n") == "example.com/a"
    assert gomod.module_path(b'module "example.com/q"\n') == "example.com/q"
    assert gomod.module_path(b"module `example.com/r`\n") == "example.com/r"
    assert gomod.module_path(b"modulex y\nmodule\n") == ""
    assert gomod.module_path(b'module "broken\n') == ""


@pytest.mark.parametrize(
    ("module", "version", "declared"),
    [
        ("example.com/a", "v1.0.0", "example.com/a"),
        ("example.com/a/v2", "v2.0.0", "example.com/a/v2"),
        ("github.com/Sirupsen/logrus", "v1.0.0", "github.com/sirupsen/logrus"),
        ("example.com/a", "v2.0.0+incompatible", "example.com/a"),
        ("gopkg.in/yaml.v2", "v2.4.0", "gopkg.in/yaml.v2"),
        ("gopkg.in/yaml.v2", "v2.4.0", "example.com/yaml/v2"),
        ("github.com/go-yaml/yaml", "v1.0.0", "gopkg.in/yaml.v2"),
    ],
)
def test_check_gomod_module_accepts(module: str, version: str, declared: str) -> None:
    gomod.check_gomod_module(f"module {declared}\n".encode(), module, version)


@pytest.mark.parametrize(
    ("module", "version", "data", "fragment"),
    [
        ("example.com/a", "v1.0.0", b"go 1.21\n", "missing module path"),
        ("example.com/a/v2", "v2.0.0", b"module example.com/a\n", "non-.../v2 module path"),
        ("example.com/a/v2", "v2.0.0", b"module example.com/a/v3\n", "non-.../v2"),
        ("example.com/a", "v1.0.0", b"module example.com/a/v2\n", "post-v1 module path"),
        ("example.com/a", "v1.0.0", b"module example.com/a/v1\n", "malformed module path"),
        ("gopkg.in/yaml.v2", "v2.0.0", b"module gopkg.in/yaml.v3\n", "non-....v2"),
    ],
)
def test_check_gomod_module_rejects(module: str, version: str, data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidContent) as e:
        gomod.check_gomod_module(data, module, version)
    assert fragment in str(e.value)


def test_synthesize_gomod() -> None:
    data = gomod.synthesize_gomod("rsc.io/breaker")
    assert data == b"module rsc.io/breaker\n"
    assert gomod.parse_gomod(data).module == "rsc.io/breaker"
    assert gomod.synthesize_gomod("a b") == b'module "a b"\n'
    assert dirhash.hash_gomod(gomod.synthesize_gomod("example.com/m")) == (
        "h1:flS2VctbRrTv+sBE+VKgxx6hlkMGPVz9MGOmzMYFg3k="
    )
