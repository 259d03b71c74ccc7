"""Tests for module.info fed by a hostile mirror: only InvalidContent ever comes out of it.

A ``.info`` or ``@latest`` body is a mirror's bytes: nesting 200,000 levels
deep, megabytes of padding, ``NaN``, numbers Python cannot convert, invalid
UTF-8 or random JSON-ish tokens must all end as ``InvalidContent`` (so the
chain tries the next mirror), never ``RecursionError`` or ``ValueError``.
``parse_list`` must read any body, and sort as Go's ``semver.Sort`` does
whatever it is given; its sort key is checked against the comparison
function it replaced.
"""

from __future__ import annotations

import functools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gomirror.errors import GomirrorError, InvalidContent
from gomirror.module import semver
from gomirror.module.info import (
    MAX_INFO_BYTES,
    check_info_body,
    check_list_body,
    format_info,
    parse_info,
    parse_list,
)

M = "example.com/hostile/mod"
DEEP = 200_000


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b"{" + b'"a":{' * DEEP + b"}" * DEEP + b"}",
        b'{"Version":"v1.0.0","Origin":' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"Version":"v1.0.0","x":' + b'{"y":' * DEEP + b"1" + b"}" * DEEP + b"}",
    ],
    ids=["array", "object", "origin", "unknown-field"],
)
def test_deep_nesting_is_invalid_content(body: bytes) -> None:
    with pytest.raises(InvalidContent):
        parse_info(body)
    with pytest.raises(InvalidContent):
        check_info_body(body, M, "v1.0.0")


def test_a_huge_body_is_invalid_content_before_it_is_parsed() -> None:
    body = b'{"Version":"v1.0.0","Pad":"' + b"x" * MAX_INFO_BYTES + b'"}'
    with pytest.raises(InvalidContent, match="at most"):
        parse_info(body)


@pytest.mark.parametrize("const", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_constants_are_invalid_content(const: bytes) -> None:
    with pytest.raises(InvalidContent, match="not JSON"):
        parse_info(b'{"Version":"v1.0.0","x":' + const + b"}")


def test_numbers_of_any_length_are_accepted_as_go_does() -> None:
    info = parse_info(b'{"Version":"v1.0.0","Size":' + b"7" * 10_000 + b"}")
    assert info.version == "v1.0.0"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",
        '{"Version":"v1.0.0"}'.encode("utf-16"),
        b'{"Version":"v1.0.0\xff"}',
        b"\xef\xbb\xbf" + b'{"Version":"v1.0.0"}',  # Go rejects a leading BOM too
    ],
)
def test_bad_encodings_are_invalid_content(body: bytes) -> None:
    with pytest.raises(InvalidContent):
        parse_info(body)


_TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    '"Version"',
    '"version"',
    '"Time"',
    '"Origin"',
    '"v1.0.0"',
    '"v1.0.0+incompatible"',
    '"2019-01-01T00:00:00Z"',
    '"0001-01-01T00:00:00+01:00"',
    '"9999-12-31T23:59:59.999999999-23:59"',
    '"2020-13-45T99:99:99+99:99"',
    "null",
    "true",
    "1e999",
    "-0",
    "1" * 40,
    '"\\ud800"',
    '"\\u0000"',
    "NaN",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_TOKENS), max_size=16),
    st.booleans(),
    st.sampled_from([None, "v1.0.0"]),
)
def test_json_ish_garbage_only_ever_raises_invalid_content(
    tokens: list[str], prefixed: bool, requested: str | None
) -> None:
    text = "".join(tokens)
    body = (('{"Version":"v1.0.0",' if prefixed else "") + text).encode()
    try:
        info = check_info_body(body, M, requested)
    except InvalidContent:
        return
    format_info(info)  # whatever was accepted can be written back


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_domain_errors(body: bytes) -> None:
    for check in (
        lambda: parse_info(body),
        lambda: check_info_body(body, M, None),
        lambda: check_list_body(body),
    ):
        try:
            check()
        except GomirrorError:
            pass
    assert isinstance(parse_list(body), list)


# --- lists ---------------------------------------------------------------------------------


def test_check_list_body_refuses_non_text_only() -> None:
    check_list_body(b"v1.0.0\nnot a version\nv2.0.0+incompatible extra fields\n")
    with pytest.raises(InvalidContent, match="UTF-8"):
        check_list_body(b"v1.0.0\n\xff\n")
    with pytest.raises(InvalidContent, match="NUL"):
        check_list_body(b"v1.0.0\n\x00\n")


def test_parse_list_of_many_repeated_and_distinct_lines() -> None:
    body = b"v1.0.0\n" * 50_000 + b"".join(f"v1.{i}.0\n".encode() for i in range(2000))
    got = parse_list(body)
    assert len(got) == 52_000
    assert got[:50_000] == ["v1.0.0"] * 50_000
    assert got[-1] == "v1.1999.0"


_VERSION_PARTS = st.lists(
    st.sampled_from(
        ["v", "0", "1", "2", "10", "01", ".", "-", "+", "rc", "alpha", "a1", "x-y", "99999999999"]
    ),
    max_size=10,
).map("".join)


def _reference_sort(versions: list[str]) -> list[str]:
    def cmp(a: str, b: str) -> int:
        c = semver.compare(a, b)
        return c if c else (a > b) - (a < b)

    return sorted(versions, key=functools.cmp_to_key(cmp))


@settings(max_examples=300, deadline=None)
@given(st.lists(_VERSION_PARTS, max_size=25))
def test_sort_key_orders_as_compare_does(versions: list[str]) -> None:
    assert semver.sort_versions(versions) == _reference_sort(versions)


@settings(max_examples=200, deadline=None)
@given(st.lists(_VERSION_PARTS, max_size=25), st.sampled_from(["\n", " extra\n", "\t\n"]))
def test_parse_list_keeps_exactly_the_valid_non_pseudo_versions(
    versions: list[str], tail: str
) -> None:
    from gomirror.module.pseudo import is_pseudo_version

    body = "".join(v + tail for v in versions).encode()
    want = [v for v in versions if v and semver.is_valid(v) and not is_pseudo_version(v)]
    assert parse_list(body) == _reference_sort(want)


def test_a_valid_info_still_round_trips() -> None:
    body = json.dumps(
        {"Version": "v1.0.0", "Time": "2019-01-01T00:00:00Z", "Origin": {"VCS": "git"}}
    ).encode()
    info = check_info_body(body, M, "v1.0.0")
    assert format_info(info) == (
        b'{"Version":"v1.0.0","Time":"2019-01-01T00:00:00Z","Origin":{"VCS":"git"}}'
    )
