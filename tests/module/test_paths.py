"""Known-answer tests for gomirror.module.paths against the ``module`` vectors."""

from __future__ import annotations

from typing import Any

import pytest
from modtestkit import vector_str

from gomirror.errors import InvalidPath, InvalidVersion
from gomirror.module import paths
from support.vectors import group

V = group("module")


def _ids(cases: list[dict[str, Any]], key: str) -> list[str]:
    return [repr(vector_str(c[key])) for c in cases]


@pytest.mark.parametrize("case", V["check_path"], ids=_ids(V["check_path"], "path"))
def test_check_path_import_file_split_escape(case: dict[str, Any]) -> None:
    p = vector_str(case["path"])
    for fn, ok_key, err_key in (
        (paths.check_path, "module_ok", "module_error"),
        (paths.check_import_path, "import_ok", "import_error"),
        (paths.check_file_path, "file_ok", "file_error"),
    ):
        if case[ok_key]:
            fn(p)
        else:
            with pytest.raises(InvalidPath) as e:
                fn(p)
            assert str(e.value) == case[err_key]
    split = case["split_path_version"]
    assert paths.split_path_version(p) == (
        vector_str(split["prefix"]),
        split["path_major"],
        split["ok"],
    )
    if case["escape_path_error"] is None:
        assert paths.escape_path(p) == case["escape_path"]
        assert paths.unescape_path(case["escape_path"]) == p
    else:
        with pytest.raises(InvalidPath) as e:
            paths.escape_path(p)
        assert str(e.value) == case["escape_path_error"]


@pytest.mark.parametrize(
    "case", V["check"], ids=[f"{c['path']}@{c['version']}" for c in V["check"]]
)
def test_check(case: dict[str, Any]) -> None:
    if case["ok"]:
        paths.check(case["path"], case["version"])
        return
    want = InvalidPath if case["error"].startswith("malformed") else InvalidVersion
    with pytest.raises(want) as e:
        paths.check(case["path"], case["version"])
    assert str(e.value) == case["error"]


@pytest.mark.parametrize("case", V["escape_path"], ids=_ids(V["escape_path"], "path"))
def test_escape_path(case: dict[str, Any]) -> None:
    assert paths.escape_path(case["path"]) == case["escaped"]
    assert paths.unescape_path(case["escaped"]) == case["path"]


@pytest.mark.parametrize(
    "case", V["unescape_path_bad"], ids=_ids(V["unescape_path_bad"], "escaped")
)
def test_unescape_path_bad(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidPath) as e:
        paths.unescape_path(case["escaped"])
    assert str(e.value) == case["error"]


@pytest.mark.parametrize("case", V["escape_version"], ids=_ids(V["escape_version"], "version"))
def test_escape_version(case: dict[str, Any]) -> None:
    if case["error"] is None:
        assert paths.escape_version(case["version"]) == case["escaped"]
        assert paths.unescape_version(case["escaped"]) == case["version"]
    else:
        with pytest.raises(InvalidVersion) as e:
            paths.escape_version(case["version"])
        assert str(e.value) == case["error"]


@pytest.mark.parametrize(
    "case", V["unescape_version_bad"], ids=_ids(V["unescape_version_bad"], "escaped")
)
def test_unescape_version_bad(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidVersion) as e:
        paths.unescape_version(case["escaped"])
    assert str(e.value) == case["error"]


def test_unescape_version_rechecks_element() -> None:
    with pytest.raises(InvalidVersion, match=r'invalid escaped version "a/b": invalid char'):
        paths.unescape_version("a/b")


@pytest.mark.parametrize(
    "case",
    V["match_path_major"],
    ids=[f"{c['version']}~{c['path_major']!r}" for c in V["match_path_major"]],
)
def test_match_path_major(case: dict[str, Any]) -> None:
    assert paths.match_path_major(case["version"], case["path_major"]) == case["match"]
    if case["error"] is None:
        paths.check_path_major(case["version"], case["path_major"])
    else:
        with pytest.raises(InvalidVersion) as e:
            paths.check_path_major(case["version"], case["path_major"])
        assert str(e.value) == case["error"]


@pytest.mark.parametrize("case", V["split_path_version"], ids=_ids(V["split_path_version"], "path"))
def test_split_path_version(case: dict[str, Any]) -> None:
    got = paths.split_path_version(case["path"])
    assert got == (case["prefix"], case["path_major"], case["ok"])


@pytest.mark.parametrize(
    "case",
    V["match_prefix_patterns"],
    ids=[f"{c['globs']!r}~{c['target']}" for c in V["match_prefix_patterns"]],
)
def test_match_prefix_patterns(case: dict[str, Any]) -> None:
    assert paths.match_prefix_patterns(case["globs"], case["target"]) == case["match"]


@pytest.mark.parametrize(
    "case", V["canonical_version"], ids=_ids(V["canonical_version"], "version")
)
def test_canonical_version(case: dict[str, Any]) -> None:
    assert paths.canonical_version(case["version"]) == case["canonical"]


@pytest.mark.parametrize(
    ("glob", "target", "want"),
    [
        ("[a-c]sc.io", "rsc.io/quote", False),
        ("[p-s]sc.io", "rsc.io/quote", True),
        ("[^r]sc.io", "rsc.io/quote", False),
        ("rsc.io/[", "rsc.io/quote", False),
        ("rsc\\.io", "rsc.io/quote", True),
        ("rsc.io\\", "rsc.io/quote", False),
        ("r*o/q*e", "rsc.io/quote", True),
    ],
)
def test_glob_semantics(glob: str, target: str, want: bool) -> None:
    assert paths.match_prefix_patterns(glob, target) == want


def test_go_quote() -> None:
    assert paths.go_quote('a"b\\c\n\x00\x7f☺') == '"a\\"b\\\\c\\n\\x00\\x7f☺"'
    assert paths.go_quote("\udcff") == '"\\xff"'
    assert paths.go_quote_rune("'") == "'\\''"
    assert paths.go_quote("\u200b") == '"\\u200b"'
